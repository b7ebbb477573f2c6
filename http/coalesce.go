package http

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// A response larger than net/http's 4 KiB connection buffer (a list page
// is 15–20 KiB) leaves in two writes at least: the buffer with the headers
// and the body's first bytes, then the rest. On machines where a system
// call is dear (virtual machines, where a write to a socket costs tens of
// microseconds), that second write is a tenth of what serving a page
// costs. Connections accepted through CoalescingListener can hold back a
// response the API writes whole (writeBody) until it is complete, and send
// it in one write.

// CoalescingListener wraps l so that the API's whole responses go out in
// one write each; give the http.Server ConnContext too, which tells the
// handlers about the connection.
func CoalescingListener(l net.Listener) net.Listener { return coalescingListener{l} }

type coalescingListener struct{ net.Listener }

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &coalescingConn{Conn: c}, nil
}

// ConnContext is the http.Server's ConnContext for connections from a
// CoalescingListener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*coalescingConn); ok {
		return context.WithValue(ctx, coalescingKey{}, cc)
	}
	return ctx
}

type coalescingKey struct{}

// coalescingConn collects what is written to it while held, and writes it
// at once when released. Only the goroutine serving the connection writes
// to it, as net/http does for HTTP/1.x.
type coalescingConn struct {
	net.Conn
	held bool
	buf  *[]byte // from holdBuffers while held
}

// holdBuffers keep held answers: shared by the connections rather than
// kept by each, so an idle connection holds no memory.
var holdBuffers = sync.Pool{New: func() any { return new([]byte) }}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.held {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// hold starts collecting what is written.
func (c *coalescingConn) hold() {
	c.held, c.buf = true, holdBuffers.Get().(*[]byte)
}

// release writes what was held back, and stops holding.
func (c *coalescingConn) release() {
	c.held = false
	if len(*c.buf) > 0 {
		_, _ = c.Conn.Write(*c.buf) // an error shows on net/http's next write or read
	}
	if cap(*c.buf) <= 256<<10 { // an unusually large answer's buffer is let go
		*c.buf = (*c.buf)[:0]
		holdBuffers.Put(c.buf)
	}
	c.buf = nil
}

// CloseWrite half-closes the connection as net/http does before closing
// one whose request it did not read to the end.
func (c *coalescingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// writeWhole writes a whole response: status, headers and body, in one
// write when the connection allows (CoalescingListener), else as net/http
// does. The caller has set Content-Length, so it is never sent chunked.
func writeWhole(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	// A body that fits net/http's 2 KiB buffer leaves with its headers in
	// one write anyway, when the handler returns.
	cc, _ := r.Context().Value(coalescingKey{}).(*coalescingConn)
	if len(body) < 2<<10 {
		cc = nil
	}
	if cc != nil {
		cc.hold()
		defer cc.release()
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	if cc != nil {
		_ = http.NewResponseController(w).Flush()
	}
}
