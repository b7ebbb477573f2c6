package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinEnv names the environment variable that points at the PostgreSQL
// server binaries (initdb, postgres) a private cluster is made with.
const BinEnv = "PLINTH_TEST_PG_BIN"

// DefaultBin is where Debian's postgresql-15 puts them.
const DefaultBin = "/usr/lib/postgresql/15/bin"

// Cluster is a private PostgreSQL cluster that one test made and that is
// stopped and removed when the test ends: for tests that need server
// settings the shared test server does not have (pgaudit preloaded, a CSV
// server log), which they must never change on the shared server.
type Cluster struct {
	// URL is the superuser's URL of database "postgres", over TCP to
	// 127.0.0.1 with a password (pg_hba.conf asks scram-sha-256 on TCP).
	URL string
	// Port is the TCP port it listens on, on 127.0.0.1 only.
	Port int
	// LogDir is its log_directory: CSV server logs (log_destination =
	// csvlog), readable by the test.
	LogDir string
	// Dir is the cluster's own folder (data, sockets, logs).
	Dir string
}

// ClusterOptions are server settings of a private cluster, given to
// postgres as -c name=value, after the defaults (which they may override).
type ClusterOptions struct {
	Settings map[string]string
	// Libraries must exist in the server's library folder (such as
	// "pgaudit" for pgaudit.so); the test skips (fails under CI=true)
	// naming the package to install when one is missing.
	Libraries map[string]string // library → the package that installs it
}

// PgauditCluster starts a private cluster with pgaudit preloaded and
// statement logging to CSV files in LogDir. It needs Debian's
// postgresql-15-pgaudit (scripts/tools installs it).
func PgauditCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartCluster(t, ClusterOptions{
		Settings:  map[string]string{"shared_preload_libraries": "pgaudit"},
		Libraries: map[string]string{"pgaudit": "postgresql-15-pgaudit"},
	})
}

// StartCluster runs initdb into a new temporary folder and starts postgres
// on a free loopback port with logging_collector on and log_destination
// csvlog, and stops it and removes the folder when the test ends. When the
// machine cannot run one (no PostgreSQL binaries, a missing library,
// initdb or postgres failing) the test is skipped with the reason, or fails
// when the environment variable CI is "true". As root it runs the server
// as the user "postgres" (initdb and postgres refuse root).
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c, err := startCluster(t, opts)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("private PostgreSQL cluster: %s", err)
		}
		t.Skipf("private PostgreSQL cluster: %s (the test needs one; it never changes the shared server)", err)
	}
	return c
}

func startCluster(t testing.TB, opts ClusterOptions) (*Cluster, error) {
	bin := os.Getenv(BinEnv)
	if bin == "" {
		bin = DefaultBin
	}
	for _, p := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return nil, fmt.Errorf("no %s in %s (install postgresql-15, or set %s to the folder of the PostgreSQL server binaries)", p, bin, BinEnv)
		}
	}
	libdir := filepath.Join(filepath.Dir(bin), "lib")
	if out, err := exec.Command(filepath.Join(bin, "pg_config"), "--pkglibdir").Output(); err == nil {
		libdir = strings.TrimSpace(string(out))
	}
	for lib, pkg := range opts.Libraries {
		if _, err := os.Stat(filepath.Join(libdir, lib+".so")); err != nil {
			return nil, fmt.Errorf("%s is not installed (no %s.so in %s): install the package %s (scripts/tools does, as root: apt-get install -y postgresql-15-pgaudit)",
				lib, lib, libdir, pkg)
		}
	}

	// As root, the server runs as "postgres", which must own its folder
	// and be able to reach it: a folder of its own under the temp dir.
	var cred *syscall.Credential
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and there is no user \"postgres\" to run the server as (initdb refuses root): %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "plinth-pgcluster-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Cluster{Dir: dir, LogDir: filepath.Join(dir, "log")}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(c.LogDir, 0o700); err != nil {
		return nil, err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	password := hex.EncodeToString(b[:])
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, p := range []string{dir, c.LogDir, pwfile} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}

	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 5))
	}
	os.Remove(pwfile)

	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": dir,
		"logging_collector":       "on",
		"log_destination":         "csvlog",
		"log_directory":           c.LogDir,
		"log_file_mode":           "0640",
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "30",
		"shared_buffers":          "16MB",
		"max_wal_size":            "64MB",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	var args []string
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}

	var out *os.File
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		out, err = os.Create(filepath.Join(dir, "postgres.out"))
		if err != nil {
			return nil, err
		}
		srv := exec.Command(filepath.Join(bin, "postgres"), append([]string{"-D", data, "-p", strconv.Itoa(port)}, args...)...)
		srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		srv.Stdout, srv.Stderr = out, out
		if err := srv.Start(); err != nil {
			out.Close()
			return nil, fmt.Errorf("start postgres: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- srv.Wait() }()
		c.Port = port
		c.URL = fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, port)
		err = waitReady(c.URL, exited)
		if err == nil {
			t.Cleanup(func() {
				// SIGINT: fast shutdown (ends sessions, checkpoints, exits).
				_ = srv.Process.Signal(syscall.SIGINT)
				select {
				case <-exited:
				case <-time.After(30 * time.Second):
					_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
					<-exited
				}
				out.Close()
			})
			return c, nil
		}
		_ = srv.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		out.Close()
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.out"))
		if attempt < 2 && strings.Contains(string(log), "could not bind") {
			continue // the free port was taken meanwhile
		}
		return nil, fmt.Errorf("postgres did not start: %v: %s", err, lastLines(string(log), 8))
	}
}

// waitReady waits until the server accepts connections, or exits.
func waitReady(url string, exited <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("postgres exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 60s: %v", last)
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CreateDatabase creates a database in the cluster and returns its URL.
func (c *Cluster) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(c.URL, "/postgres?", "/"+name+"?", 1)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
