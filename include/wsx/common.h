/* Platform headers and conventions shared by every wsx header.
 * wsx functions return 0 or a WSA error code (WSAECONNRESET...), never -1 with errno. */
#ifndef WSX_COMMON_H
#define WSX_COMMON_H

/* winsock2.h must precede windows.h, or windows.h pulls in the old winsock.h. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

/* ConnectEx, WSASendMsg, inet_ntop and CancelIoEx need Vista or later. */
#if defined(_WIN32_WINNT) && _WIN32_WINNT < 0x0600
#error "wsx needs _WIN32_WINNT >= 0x0600"
#endif

/* WSX_API marks every public function. One set of headers serves both builds of the library:
 * - the static library (wsx::wsx, wsx-static.pc, libwsx.a): nothing to define; WSX_API is empty;
 * - the DLL (wsx::wsx_shared, wsx.pc, libwsx.dll + libwsx.dll.a): consumers define WSX_DLL
 *   (the CMake target and wsx.pc do it for them) and WSX_API is __declspec(dllimport); the DLL
 *   itself is compiled with WSX_BUILDING_DLL and WSX_API is __declspec(dllexport), so it exports
 *   exactly the public functions.
 * Both spellings work with MSVC, MinGW-w64 GCC and clang. A build system may also define WSX_API
 * itself. WSX_STATIC is accepted and wins over WSX_DLL. */
#ifndef WSX_API
#if defined(WSX_BUILDING_DLL)
#define WSX_API __declspec(dllexport)
#elif defined(WSX_DLL) && !defined(WSX_STATIC)
#define WSX_API __declspec(dllimport)
#else
#define WSX_API
#endif
#endif

#endif
