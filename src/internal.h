/* Declarations shared between wsx's sources and its unit tests; not installed. */
#ifndef WSX_INTERNAL_H
#define WSX_INTERNAL_H

#include "wsx/wsx.h"

/* Fill `out` by loading each function of `guids` (WSX_EXT_COUNT of them, in wsx_ext_id order)
 * on socket `s`. Absent ones get their stub. Returns 0 or the WSAIoctl error of the first that
 * failed (the table is usable either way). Exposed so tests can ask for a missing function. */
int wsx__ext_load(SOCKET s, const GUID *guids, wsx_ext *out);

extern const GUID wsx__ext_guids[WSX_EXT_COUNT];

#endif
