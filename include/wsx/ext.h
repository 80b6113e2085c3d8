/* Winsock extension functions (AcceptEx, ConnectEx, ...).
 *
 * Windows rule: these are not exported by ws2_32; each is fetched from the socket's provider with
 * WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER), and a pointer fetched through one provider must
 * not be used on a socket of another (layered providers differ). wsx therefore loads them on the
 * socket being used and caches one table per (address family, socket type, protocol, provider).
 */
#ifndef WSX_EXT_H
#define WSX_EXT_H

#include "wsx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wsx_ext_id {
    WSX_EXT_ACCEPTEX,
    WSX_EXT_GETACCEPTEXSOCKADDRS,
    WSX_EXT_CONNECTEX,
    WSX_EXT_DISCONNECTEX,
    WSX_EXT_TRANSMITFILE,
    WSX_EXT_TRANSMITPACKETS,
    WSX_EXT_WSARECVMSG,
    WSX_EXT_WSASENDMSG,
    WSX_EXT_COUNT
} wsx_ext_id;

#define WSX_EXT_BIT(id) (1u << (id))
#define WSX_EXT_ALL ((1u << WSX_EXT_COUNT) - 1u)

/* One provider's extension functions. No member is ever NULL: a function the provider lacks is
 * replaced by a stub that fails with WSAEOPNOTSUPP, its bit is set in `missing`, and
 * `missing_error` keeps what WSAIoctl said. Tables live until the process ends. */
typedef struct wsx_ext {
    int af;
    int type;
    int protocol;
    GUID provider;
    unsigned missing;
    int missing_error[WSX_EXT_COUNT];
    LPFN_ACCEPTEX AcceptEx;
    LPFN_GETACCEPTEXSOCKADDRS GetAcceptExSockaddrs;
    LPFN_CONNECTEX ConnectEx;
    LPFN_DISCONNECTEX DisconnectEx;
    LPFN_TRANSMITFILE TransmitFile;
    LPFN_TRANSMITPACKETS TransmitPackets;
    LPFN_WSARECVMSG WSARecvMsg;
    LPFN_WSASENDMSG WSASendMsg;
} wsx_ext;

/* The extension table for the provider of socket `s`, loaded on `s` the first time that provider
 * is seen and cached after (thread-safe; later calls cost one getsockopt). Returns 0, or the WSA
 * error of getsockopt(SO_PROTOCOL_INFOW) (WSAENOTSOCK for a closed socket), WSAENOBUFS, or
 * WSAEFAULT for a NULL out. */
WSX_API int wsx_ext_get(SOCKET s, const wsx_ext **out);

/* 0 if every function in `mask` (WSX_EXT_BIT(...) ORed) is present, else WSAEOPNOTSUPP with
 * *missing_name (if not NULL) set to the first absent one's name, e.g. "TransmitPackets";
 * WSAEFAULT for a NULL ext. */
WSX_API int wsx_ext_require(const wsx_ext *ext, unsigned mask, const char **missing_name);

/* "AcceptEx", "GetAcceptExSockaddrs", ...; "?" for an id out of range. */
WSX_API const char *wsx_ext_name(wsx_ext_id id);

#ifdef __cplusplus
}
#endif

#endif
