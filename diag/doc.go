// Package diag reads what the kernel knows about a network namespace: every
// TCP socket through sock_diag (inet_diag), each socket's tcp_info, the
// socket's own keepalive and user-timeout options, the processes that hold
// it, and the namespace's TCP and conntrack sysctls.
//
// Everything here only reads. Socket options are read from a duplicate of the
// owner's file descriptor with getsockopt and the duplicate is closed at once;
// nothing is ever set on it.
package diag
