package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/sns"
)

// checkBus connects to the event bus and looks for every domain's stream
// and its retention.
func (d *doctor) checkBus(ctx context.Context) {
	if sns.IsURL(d.cfg.EventBus) {
		d.checkSNS(ctx)
		return
	}
	nc, where, stop, ok := d.reachBus()
	if !ok {
		return
	}
	defer stop()
	js, err := jetstream.New(nc)
	if err == nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.AccountInfo(actx)
		cancel()
	}
	if err != nil {
		d.add(check{name: "bus", status: statusFail, detail: fmt.Sprintf("%s: JetStream does not answer: %v", where, err),
			fix: "start the NATS server with JetStream enabled (nats-server -js)"})
		return
	}
	d.add(check{name: "bus", status: statusOK, detail: where + ": JetStream answers"})
	for _, x := range d.ds {
		d.checkStream(ctx, js, plinthnats.StreamName(d.cfg.Environment, x.Name))
	}
}

// checkSNS asks SNS for every domain's FIFO topic (eventBus).
func (d *doctor) checkSNS(ctx context.Context) {
	pub, err := sns.Open(ctx, d.cfg.EventBus, d.cfg.Environment, d.ds, sns.Options{})
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = pub.Check(ctx)
		cancel()
	}
	if err != nil {
		d.add(check{name: "bus", status: statusFail, detail: err.Error(),
			fix: "check eventBus (PLINTH_EVENT_BUS), the AWS credentials (sns:ListTopics) and that deploy/terraform made each domain's topic"})
		return
	}
	d.add(check{name: "bus", status: statusOK, detail: fmt.Sprintf("%s: every domain's FIFO topic exists", d.cfg.EventBus)})
}

// reachBus connects to the configured NATS, or opens the embedded one's
// folder when no serve holds it.
func (d *doctor) reachBus() (nc *natsgo.Conn, where string, stop func(), ok bool) {
	if d.cfg.NATSURL != "" {
		where = plinthnats.RedactURL(d.cfg.NATSURL)
		nc, err := natsgo.Connect(d.cfg.NATSURL, natsgo.Name("plinth doctor"), natsgo.Timeout(5*time.Second))
		if err != nil {
			d.add(check{name: "bus", status: statusFail, detail: fmt.Sprintf("%s: %v", where, err),
				fix: "check natsURL (PLINTH_NATS_URL, --nats-url) and that the NATS server runs and this machine may reach it"})
			return nil, "", nil, false
		}
		return nc, where, nc.Close, true
	}
	if _, err := os.Stat(d.cfg.DataDir); err != nil {
		d.add(check{name: "bus", status: statusSkip, detail: fmt.Sprintf("embedded NATS: no data folder %s yet; serve creates it", d.cfg.DataDir)})
		return nil, "", nil, false
	}
	srv, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: d.cfg.DataDir})
	if err != nil {
		if strings.Contains(err.Error(), "--nats-url") { // held by a running serve
			d.add(check{name: "bus", status: statusOK, detail: "embedded NATS in " + d.cfg.DataDir + " is held by a running plinth process"})
		} else {
			d.add(check{name: "bus", status: statusFail, detail: "embedded NATS: " + err.Error(), fix: "make the data folder (dataDir) writable by the user Plinth runs as"})
		}
		return nil, "", nil, false
	}
	nc, err = srv.Conn()
	if err != nil {
		srv.Shutdown()
		d.add(check{name: "bus", status: statusFail, detail: "embedded NATS: " + err.Error()})
		return nil, "", nil, false
	}
	return nc, "embedded (" + srv.StoreDir() + ")", func() { nc.Close(); srv.Shutdown() }, true
}

// checkStream checks that a domain's stream exists and has the configured
// retention.
func (d *doctor) checkStream(ctx context.Context, js jetstream.JetStream, name string) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		d.add(check{name: "stream", status: statusFail, detail: name + " does not exist: events of its domain have nowhere to go",
			fix: "start plinth serve (or plinth relay) once with this configuration: it creates the streams"})
		return
	}
	if err != nil {
		d.add(check{name: "stream", status: statusFail, detail: fmt.Sprintf("%s: %v", name, err)})
		return
	}
	cfg := s.CachedInfo().Config
	state := s.CachedInfo().State
	detail := fmt.Sprintf("%s: %d events, %s; max age %s, max bytes %s", name, state.Msgs, byteSize(int64(state.Bytes)), ageText(cfg.MaxAge), bytesText(cfg.MaxBytes))
	if cfg.MaxAge != d.cfg.StreamMaxAge || cfg.MaxBytes != streamBytes(d.cfg.StreamMaxBytes) {
		d.add(check{name: "stream", status: statusWarn, detail: detail + fmt.Sprintf(" (configured: %s, %s)", ageText(d.cfg.StreamMaxAge), bytesText(streamBytes(d.cfg.StreamMaxBytes))),
			fix: "serve and plinth relay apply the configured retention when they start"})
		return
	}
	d.add(check{name: "stream", status: statusOK, detail: detail})
}

// streamBytes is a size cap as JetStream keeps it (-1: none).
func streamBytes(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

func ageText(a time.Duration) string {
	if a == 0 {
		return "none"
	}
	return a.String()
}

func bytesText(n int64) string {
	if n <= 0 {
		return "none"
	}
	return byteSize(n)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// checkLake writes, reads back and deletes a small object in the lake. A
// lake folder not made yet is left so: its nearest existing parent must
// take a new folder.
func (d *doctor) checkLake(ctx context.Context) {
	target, err := openLake(ctx, d.cfg)
	if dir, ok := target.(lake.Dir); ok && err == nil {
		if parent := missingFolder(string(dir)); parent != "" {
			if err = probeFolder(parent); err == nil {
				d.add(check{name: "lake", status: statusOK, detail: fmt.Sprintf("%s does not exist yet; %s lets Plinth create it", dir, parent)})
				return
			}
		}
	}
	if err == nil {
		key := fmt.Sprintf("_doctor/probe-%d", time.Now().UnixNano())
		if err = target.Put(ctx, key, []byte("plinth doctor")); err == nil {
			var got []byte
			got, err = target.Get(ctx, key)
			if err == nil && string(got) != "plinth doctor" {
				err = errors.New("the object read back differs from the one written")
			}
			if derr := target.Delete(ctx, key); err == nil {
				err = derr
			}
			if dir, ok := target.(lake.Dir); ok {
				os.Remove(filepath.Join(string(dir), "_doctor")) // only when empty
			}
		}
	}
	if err != nil {
		d.add(check{name: "lake", status: statusFail, detail: fmt.Sprintf("%s: %v", d.cfg.LakeRoot(), err),
			fix: "make the lake folder writable by the user Plinth runs as, or for s3:// give the role s3:PutObject, GetObject, DeleteObject and ListBucket on the prefix"})
		return
	}
	d.add(check{name: "lake", status: statusOK, detail: target.String() + " is writable"})
}

// missingFolder returns the nearest existing parent of dir when dir does
// not exist, else "".
func missingFolder(dir string) string {
	if _, err := os.Stat(dir); err == nil {
		return ""
	}
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			return p
		}
	}
}

// probeFolder checks that a folder can be created in parent.
func probeFolder(parent string) error {
	tmp, err := os.MkdirTemp(parent, ".plinth-doctor-")
	if err != nil {
		return err
	}
	return os.Remove(tmp)
}
