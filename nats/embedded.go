package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the embedded server.
type EmbeddedConfig struct {
	// Dir is Plinth's data directory. JetStream keeps its files in
	// Dir/nats. Only one process at a time may use it: StartEmbedded
	// fails when another holds it.
	Dir string
	// Listen, when set ("127.0.0.1:4222"), also accepts NATS clients on
	// that TCP address, so that listeners and `plinth events tail` in other
	// processes can connect. Empty means in-process connections only.
	Listen string
	// SyncAlways makes JetStream fsync every message before acknowledging
	// it. Without it, stored messages survive a crash of the process (they
	// are written to the file system at once) but the file system is
	// synced every two minutes, so a power loss may lose recent events
	// that the relay has already marked sent.
	SyncAlways bool
	// MaxPayload is the largest message accepted, in bytes; default 8 MiB.
	MaxPayload int32
	// Logger receives the server's warnings and errors (notices at debug
	// level); nil means they are discarded.
	Logger *slog.Logger
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv  *server.Server
	dir  string
	lock *os.File
}

// StartEmbedded starts the embedded server and waits until it accepts
// connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded NATS: no data directory given")
	}
	storeDir := filepath.Join(cfg.Dir, "nats")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS: creating %s: %w", storeDir, err)
	}
	lock, err := lockDir(storeDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:         "plinth-embedded",
		JetStream:          true,
		StoreDir:           storeDir,
		SyncAlways:         cfg.SyncAlways,
		DontListen:         cfg.Listen == "",
		NoSigs:             true,
		NoLog:              cfg.Logger == nil,
		MaxPayload:         cfg.MaxPayload,
		HTTPPort:           0,
		JetStreamMaxMemory: 256 << 20,
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 8 << 20
	}
	if opts.MaxPayload > 64<<20 {
		// The server refuses a payload above its max_pending.
		opts.MaxPending = int64(opts.MaxPayload) * 2
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			unlockDir(lock)
			return nil, fmt.Errorf("embedded NATS: listen address %q: use host:port, such as 127.0.0.1:4222", cfg.Listen)
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			unlockDir(lock)
			return nil, fmt.Errorf("embedded NATS: listen address %q: the port must be a number", cfg.Listen)
		}
		opts.Host, opts.Port = host, n
		if n == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		unlockDir(lock)
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&slogAdapter{l: cfg.Logger.With("component", "nats")}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		unlockDir(lock)
		if cfg.Listen != "" {
			return nil, fmt.Errorf("embedded NATS did not start within 30s (is %s free? choose another address)", cfg.Listen)
		}
		return nil, errors.New("embedded NATS did not start within 30s")
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		unlockDir(lock)
		return nil, fmt.Errorf("embedded NATS: JetStream did not start on %s", storeDir)
	}
	return &Embedded{srv: srv, dir: storeDir, lock: lock}, nil
}

// Conn returns a new in-process connection to the server. Close it when
// done; Shutdown closes any left.
func (e *Embedded) Conn() (*natsgo.Conn, error) {
	nc, err := natsgo.Connect("", natsgo.InProcessServer(e.srv), natsgo.Name("plinth"), natsgo.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL other processes connect to, or "" when the server
// does not listen on TCP.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// StoreDir is where JetStream keeps its files.
func (e *Embedded) StoreDir() string { return e.dir }

// Server is the embedded server, for tests and monitoring.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server, after flushing JetStream's files, and
// releases the data directory. It is safe to call more than once.
func (e *Embedded) Shutdown() {
	if e == nil || e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	unlockDir(e.lock)
	e.lock = nil
}

// slogAdapter sends nats-server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
