/* wsx: a toolkit for Windows overlapped sockets. Include this, link wsx, ws2_32, mswsock, ntdll. */
#ifndef WSX_WSX_H
#define WSX_WSX_H

#include "wsx/common.h"
#include "wsx/error.h"
#include "wsx/ext.h"
#include "wsx/addr.h"
#include "wsx/buf.h"
#include "wsx/op.h"
#include "wsx/port.h"
#include "wsx/stream.h"
#include "wsx/accept.h"
#include "wsx/connect.h"
#include "wsx/trace.h"

#define WSX_VERSION_MAJOR 0
#define WSX_VERSION_MINOR 1
#define WSX_VERSION_PATCH 0
#define WSX_VERSION_STRING "0.1.0"

#endif
