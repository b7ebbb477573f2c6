package mariadbtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Server is a private MariaDB server a test started.
type Server struct {
	URL  string // mariadb://root@127.0.0.1:PORT/test
	cmd  *exec.Cmd
	dir  string
	done chan struct{} // closed once mariadbd has exited
}

// StartServer starts a private MariaDB server from the machine's binaries
// (mariadb-install-db, mariadbd) on a free loopback port in a temporary
// folder, with the binary log on in row format (what change capture
// reads), and a database "test". It is stopped and removed when the test
// ends; the shared server is never touched. When the binaries are missing
// the test is skipped, or fails when CI is "true".
func StartServer(t testing.TB) *Server {
	t.Helper()
	s, err := startServer()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("private MariaDB: %s", err)
		}
		t.Skipf("private MariaDB: %s", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func startServer() (*Server, error) {
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		return nil, fmt.Errorf("mariadb-install-db is not installed")
	}
	daemon := "/usr/sbin/mariadbd"
	if _, err := os.Stat(daemon); err != nil {
		if daemon, err = exec.LookPath("mariadbd"); err != nil {
			return nil, fmt.Errorf("mariadbd is not installed")
		}
	}
	dir, err := os.MkdirTemp("", "plinth-mariadb-")
	if err != nil {
		return nil, err
	}
	u, _ := user.Current()
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(install, "--no-defaults", "--datadir="+data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--user="+u.Username).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	// The port is free when chosen, but another process may take it before
	// mariadbd binds it (it then exits at once): try another.
	for attempt := 1; ; attempt++ {
		s, err := startDaemon(daemon, dir, data, u.Username)
		switch {
		case err == nil:
			return s, nil
		case s == nil || !s.exited(): // startDaemon cleaned up
			return nil, err
		case attempt == 3:
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// startDaemon starts mariadbd on a free port and waits until it answers.
// When it does not, the server is stopped and its folder removed, unless it
// exited by itself (exited), when the folder is kept for another try.
func startDaemon(daemon, dir, data, username string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(daemon, "--no-defaults", "--datadir="+data, fmt.Sprintf("--port=%d", port), "--bind-address=127.0.0.1",
		"--socket="+filepath.Join(dir, "sock"), "--pid-file="+filepath.Join(dir, "pid"), "--user="+username,
		"--log-bin="+filepath.Join(data, "binlog"), "--binlog-format=ROW", "--server-id=1", "--skip-name-resolve",
		"--log-error="+filepath.Join(dir, "error.log"), "--innodb-buffer-pool-size=32M", "--performance-schema=OFF")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{URL: fmt.Sprintf("mariadb://root@127.0.0.1:%d/test", port), cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(); err != nil {
		if !s.exited() {
			s.Stop()
		}
		return s, err
	}
	return s, nil
}

// exited says whether mariadbd has exited by itself.
func (s *Server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) waitReady() error {
	u, _ := url.Parse(s.URL)
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := Admin(u)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS test")
			cancel()
			db.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) || s.exited() {
			log, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			return fmt.Errorf("the server did not start: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the server and removes its folder.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
