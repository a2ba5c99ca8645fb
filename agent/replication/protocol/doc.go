// Package protocol defines LIVEMIGRATE-REPLICATION/1, what a source agent
// and the receiver of a target volume say on a connection: a request line
// first, then the exchange that request names. The receiver serves each
// request (package rsync: Receiver.ServeConn) and the sender asks them
// (package rsync: Send, SendTar, FetchManifest, FetchBlockIndex,
// SendBlockDelta).
//
// A connection is authenticated before the request is read (package
// transport), carries one request, and ends with it. The request line is one
// of the fixed lines of Request.Line: the sender never names a command or a
// path, and the receiver answers anything else with "unknown request" and
// closes the connection.
//
// It must never depend on the code that serves or sends the requests: it is
// the wire format both sides agree on.
package protocol
