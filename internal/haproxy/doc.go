// Package haproxy drives a real HAProxy: a client of its Runtime API (the
// stats socket) that applies spillway's decisions (server state,
// slow-start weights, per-server maxconn, edge shedding through maps)
// without reloads, and reads back what HAProxy holds.
//
// # Contract
//
//   - A Runtime comes from NewRuntime and is safe for concurrent use; it
//     holds no connection and needs no Close. Each command is one
//     connection in HAProxy's non-interactive mode: send one line, read
//     the answer to EOF. Nothing is pipelined. A Runtime has at most
//     MaxConcurrent commands in flight; a unix socket that refuses a
//     connect because HAProxy is at its "stats maxconn" (EAGAIN) is
//     dialled again until the context ends (nothing was sent, so that is
//     safe).
//   - Every call takes a context. Its deadline bounds the dial and the
//     exchange; without one, Runtime.Timeout (DefaultTimeout when zero)
//     does. A call starts no goroutine but, when its context is
//     cancelled mid-call, the one context.AfterFunc runs to unblock it.
//   - Errors name the command and quote HAProxy's answer (*CommandError).
//     HAProxy answers most errors as text with no status of its own; the
//     texts HAProxy 2.6 documents are mapped to ErrNotFound,
//     ErrUnknownCommand and ErrPermissionDenied, and a command that must
//     answer nothing but answers text fails with ErrRejected. Transport
//     failures wrap the net error and are not *CommandError.
//   - Names, keys and values are checked before they are sent: the CLI
//     splits arguments on spaces and commands on ';', so an argument
//     holding either (or a backslash, or a control character) is refused
//     with ErrBadArgument rather than escaped.
//   - The parsers (ParseServersState, ParseMap, ParseInfo) take outside
//     input and never panic; they are fuzzed. ParseServersState reads
//     version 1 of the format by the header's field names, so it also
//     reads a server-state-file.
//   - Runtime changes live in the running process only: a restart or a
//     reload brings back the configuration's values. Info tells a caller
//     that HAProxy restarted (Info.RestartedSince), so it can apply its
//     state again.
package haproxy
