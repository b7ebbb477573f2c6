package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/legacy"
	"github.com/plinth-data/plinth/legacy/binlog"
	"github.com/plinth-data/plinth/legacy/mssql"
	"github.com/plinth-data/plinth/legacy/pgoutput"
)

func migrateCDCCommand() *cobra.Command {
	var f migrateFlags
	var metricsListen, keyFile string
	var obfuscate, cleanup bool
	var mssqlMode, binlogPosition string
	cmd := &cobra.Command{
		Use:   "cdc --mapping M [--metrics-listen 127.0.0.1:9464] [--cleanup]",
		Short: "Keep the target in step with the source continuously, from its change log",
		Long: `Continuous change capture: an initial snapshot load at a known source position, then
every committed change after it (MariaDB/MySQL: the row-based binary log, read as a replica;
PostgreSQL: logical replication with pgoutput, through a publication and a slot named
plinth_<hash of the mapping> that it creates — the only things it writes to the source —
and that --cleanup drops, together with the stored position; SQL Server: Change Tracking
(CHANGETABLE) or CDC change tables, polled every second). When the source no longer serves
the stored position (its retention passed it, the binlog file was purged, the slot is gone)
it loads a new snapshot and logs why; an interrupted initial load resumes after its last
checkpointed key while the source still serves the position it pinned.
A changed row re-reads its record — a change to a child row (one telephone number) updates its
parent — and writes it through the write path (one event and one audit record) only when its
data differs, so a restart that replays changes writes nothing twice. The source position is
stored after the changes before it are applied; a restart resumes from it. The lag (seconds
from a change's commit in the source to its applying) and the backlog (bytes of the source's
change log after the applied position, changes received and not yet applied) are the
Prometheus gauges plinth_migrate_cdc_lag_seconds, plinth_migrate_cdc_behind_bytes and
plinth_migrate_cdc_pending_changes on --metrics-listen, and shown by plinth migrate status.
Runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := setupMigrate(cmd, &f, obfuscate, keyFile)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx := cmd.Context()
			capture, err := newCapture(ctx, s, f.source, mssql.Mode(mssqlMode), binlog.Method(binlogPosition))
			if err != nil {
				return err
			}
			if cleanup {
				return cleanupCapture(ctx, s, capture)
			}
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: s.st, Environment: s.cfg.Environment, Events: true, Audit: true})
			if err != nil {
				return err
			}
			if err := recordProvenance(ctx, s.st, s.class, s.m, "cdc"); err != nil {
				return err
			}
			onApplied, onBacklog, err := cdcMetrics(ctx, metricsListen, s.m, s.logger)
			if err != nil {
				return err
			}
			s.logger.Info("change capture starting", "mapping", s.m.File, "system", s.m.System)
			// A lost connection (the source restarting) is retried with a
			// growing pause; each retry resumes from the stored position.
			pause := time.Second
			for {
				started := time.Now()
				err := legacy.RunCDC(ctx, s.src, s.st, w, s.m, capture, legacy.CDCOptions{Meter: legacyMeter(s.logger), OnApplied: onApplied, OnBacklog: onBacklog,
					Notice: func(msg string) { s.logger.Warn(msg) }})
				if err == nil || ctx.Err() != nil {
					return nil
				}
				if time.Since(started) > time.Minute {
					pause = time.Second
				}
				s.logger.Error("change capture stopped; resuming from the stored position", "error", err.Error(), "in", pause.String())
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(pause):
				}
				pause = min(2*pause, 30*time.Second)
			}
		},
	}
	f.add(cmd)
	addConfigFlags(cmd, with(storeFlags, "env", "log-level")...)
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics (/metrics) on this address, e.g. 127.0.0.1:9464")
	cmd.Flags().StringVar(&binlogPosition, "binlog-position", "", "MariaDB/MySQL sources: how the snapshot's binlog position is found — snapshot (MariaDB's binlog_snapshot_*) or before (the binlog's end read before the snapshot opens; MySQL); default by the server's flavor")
	cmd.Flags().StringVar(&mssqlMode, "mssql-mode", "changetracking", "SQL Server sources: changetracking (CHANGETABLE, every edition) or cdc (CDC change tables)")
	cmd.Flags().BoolVar(&cleanup, "cleanup", false, "stop capturing for good: drop the source's slot and publication (PostgreSQL) and the stored position, then exit")
	cmd.Flags().BoolVar(&obfuscate, "obfuscate", false, "obfuscate every record on its way in (real data into staging)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the obfuscation key, with --obfuscate")
	return cmd
}

// newCapture picks the source's change capture.
func newCapture(ctx context.Context, s *migrateSetup, sourceURL string, mode mssql.Mode, method binlog.Method) (legacy.Capture, error) {
	url := sourceURL
	if url == "" {
		var err error
		if url, err = s.m.ConnectionURL(); err != nil {
			return nil, err
		}
	}
	switch s.src.Kind {
	case legacy.KindMariaDB, legacy.KindMySQL:
		if method != binlog.Auto && method != binlog.Snapshot && method != binlog.Before {
			return nil, fmt.Errorf("--binlog-position must be snapshot or before")
		}
		c, err := binlog.New(ctx, s.src, url, s.m)
		if err != nil {
			return nil, err
		}
		c.Method = method
		return c, nil
	case legacy.KindPostgres:
		return pgoutput.New(ctx, s.src, url, s.m)
	case legacy.KindSQLServer:
		if mode != mssql.ChangeTracking && mode != mssql.CDC {
			return nil, fmt.Errorf("--mssql-mode must be changetracking or cdc")
		}
		return mssql.New(ctx, s.src, s.m, mode)
	}
	return nil, fmt.Errorf("change capture from %s sources is not available yet; use plinth migrate sync --every", s.src.Kind)
}

// cdcMetrics registers the lag gauges, serves them when asked, and logs
// progress every few seconds.
func cdcMetrics(ctx context.Context, listen string, m *legacy.Mapping, logger *slog.Logger) (func(legacy.CDCStatus), func(legacy.CDCBacklog), error) {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"system": m.System, "domain": m.Domain, "entity": m.Plural}
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "plinth_migrate_cdc_lag_seconds", ConstLabels: labels,
		Help: "Seconds from the last applied source commit to its applying."})
	behind := prometheus.NewGauge(prometheus.GaugeOpts{Name: "plinth_migrate_cdc_behind_bytes", ConstLabels: labels,
		Help: "Bytes of the source's change log (binlog, WAL) after the position the target has applied; -1 when the source cannot tell. Looked up every 5 s."})
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: "plinth_migrate_cdc_pending_changes", ConstLabels: labels,
		Help: "Source row changes received from the change log and not yet applied."})
	applied := prometheus.NewGauge(prometheus.GaugeOpts{Name: "plinth_migrate_cdc_applied_records", ConstLabels: labels,
		Help: "Records changed by change capture since it began (kept across restarts)."})
	reg.MustRegister(lag, behind, pending, applied)
	if listen != "" {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, nil, fmt.Errorf("metrics: %w", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server", "error", err)
			}
		}()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	logged := time.Now()
	var rejected int64
	return func(st legacy.CDCStatus) {
			if st.Rejected > rejected {
				rejected = st.Rejected
				logger.Warn("change capture rejected a source row", "rejected", st.Rejected, "last", st.LastRejection)
			}
			lag.Set(st.Lag)
			applied.Set(float64(st.Applied))
			if time.Since(logged) >= 5*time.Second {
				logged = time.Now()
				logger.Info("change capture", "position", st.Position, "applied", st.Applied, "lagSeconds", st.Lag)
			}
		}, func(b legacy.CDCBacklog) {
			behind.Set(float64(b.Bytes))
			pending.Set(float64(b.Pending))
		}, nil
}

// cleanupCapture removes what change capture keeps: the source's slot and
// publication, where it has them, and the stored position.
func cleanupCapture(ctx context.Context, s *migrateSetup, c legacy.Capture) error {
	if pc, ok := c.(*pgoutput.Capture); ok {
		if err := pc.Cleanup(ctx); err != nil {
			return err
		}
		s.logger.Info("dropped the replication slot and publication", "name", pc.Slot)
	}
	if err := s.st.SetCheckpoint(ctx, s.m.CheckpointName("cdc-backlog"), []byte(`{"bytes":-1}`)); err != nil {
		return err
	}
	return s.st.SetCheckpoint(ctx, s.m.CheckpointName("cdc"), []byte(`{}`))
}
