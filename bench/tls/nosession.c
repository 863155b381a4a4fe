/* bench/tls/nosession.c — LD_PRELOAD shim for the TLS load generators (wrk, h2load).
 *
 * Both clients resume TLS sessions when they reconnect (wrk keeps the session in its SSL object
 * across SSL_clear; h2load hands the last session to SSL_set_session), so a "new connection per
 * request" run would measure resumed handshakes, and only as far as each server's session cache
 * or tickets allow. With this shim the client never offers a session: every connection is a full
 * handshake, whatever the server's resumption settings. Built by bench/tls.sh with
 *   cc -O2 -shared -fPIC -o nosession.so nosession.c -ldl
 * and used as LD_PRELOAD=.../nosession.so wrk ... ; it changes nothing else.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

static int (*real_set_session)(SSL *, SSL_SESSION *);
static int (*real_connect)(SSL *);
static int (*real_do_handshake)(SSL *);
static int (*real_in_before)(const SSL *);

static void init(void) {
    if (!real_set_session) real_set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_NEXT, "SSL_set_session");
    if (!real_connect) real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (!real_do_handshake) real_do_handshake = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_do_handshake");
    if (!real_in_before) real_in_before = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_in_before");
}

/* Drop a session kept from an earlier connection before the ClientHello is sent. */
static void forget(SSL *s) {
    init();
    if (real_in_before && real_set_session && real_in_before(s)) real_set_session(s, NULL);
}

int SSL_set_session(SSL *s, SSL_SESSION *sess) {
    init();
    (void)sess;
    return real_set_session ? real_set_session(s, NULL) : 1;
}

int SSL_connect(SSL *s) {
    forget(s);
    return real_connect(s);
}

int SSL_do_handshake(SSL *s) {
    forget(s);
    return real_do_handshake(s);
}
