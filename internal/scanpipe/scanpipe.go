// Package scanpipe overlaps the two halves of a store's Scan: reading rows
// and turning them into records (the producer, on its own goroutine) and
// whatever the caller does with each record (fn, on the caller's
// goroutine). Records travel in chunks of a bounded size, at most two in
// flight (one being filled, one being consumed), so memory stays flat
// however many records the scan reads.
package scanpipe

import (
	"context"
	"errors"

	"github.com/plinth-data/plinth"
)

// ErrStopped is returned by emit once the consumer has stopped (fn failed,
// the context ended, or fn panicked): the producer returns promptly
// without reading further.
var ErrStopped = errors.New("scanpipe: the consumer stopped")

// Run calls produce on a new goroutine and fn, on the calling goroutine,
// with every record produce passes to emit, in order. It returns when
// produce has returned and every record emitted before has gone to fn, or
// as soon as fn fails (fnErr, unchanged) or ctx ends (err is ctx.Err());
// in every case only after produce has returned, so the producer's
// resources (a transaction, a connection) are free again when Run returns
// and no goroutine outlives it. fn is never called once ctx has ended.
// Otherwise err is produce's error.
//
// chunk is how many records travel together. emit blocks while the
// consumer is still busy with the previous chunk, and returns ErrStopped
// (which produce should pass back) when the consumer has stopped; produce
// should stop promptly when ctx ends as well.
//
// With maps not nil, the Data map (or Values) of each record goes back to
// the producer once fn has returned (see Maps): for a consumer that keeps
// no record's Data.
func Run(ctx context.Context, chunk int, maps *Maps, produce func(emit func(plinth.Record) error) error, fn func(plinth.Record) error) (fnErr, err error) {
	full := make(chan []plinth.Record)    // filled chunks, unbuffered: at most two in flight
	free := make(chan []plinth.Record, 1) // a consumed chunk, handed back for reuse
	stop := make(chan struct{})
	done := make(chan struct{})
	var (
		prodErr  error
		panicked any
	)
	go func() {
		defer close(done)
		defer close(full)
		defer func() {
			if p := recover(); p != nil {
				panicked = p
			}
		}()
		buf := make([]plinth.Record, 0, chunk)
		send := func() error {
			select {
			case full <- buf:
			case <-stop:
				return ErrStopped
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case buf = <-free:
			default:
				buf = make([]plinth.Record, 0, chunk)
			}
			return nil
		}
		prodErr = produce(func(r plinth.Record) error {
			buf = append(buf, r)
			if len(buf) >= chunk {
				return send()
			}
			return nil
		})
		if prodErr == nil && len(buf) > 0 {
			prodErr = send()
		}
	}()
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
		}
		<-done
	}
	defer halt() // fn panicked: the producer still ends before the panic goes on
	for recs := range full {
		for i, r := range recs {
			if err := ctx.Err(); err != nil {
				halt()
				return nil, err
			}
			if err := fn(r); err != nil {
				halt()
				return err, nil
			}
			maps.put(r)
			recs[i] = plinth.Record{} // let the record go
		}
		select {
		case free <- recs[:0]:
		default:
		}
	}
	<-done
	if panicked != nil {
		panic(panicked)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, prodErr
}

// Maps carries the Data maps (or Values slices) of consumed records back
// to the producer, so that a long scan does not allocate (and collect) one
// per record.
type Maps struct {
	maps   chan map[string]any
	values chan []any
}

// NewMaps returns a Maps for a pipe of the given chunk size.
func NewMaps(chunk int) *Maps {
	return &Maps{maps: make(chan map[string]any, 2*chunk), values: make(chan []any, 2*chunk)}
}

// Get returns an empty map: a consumed record's, or a new one for n keys.
func (m *Maps) Get(n int) map[string]any {
	if m != nil {
		select {
		case d := <-m.maps:
			clear(d)
			return d
		default:
		}
	}
	return make(map[string]any, n)
}

// Values returns a slice of n nils: a consumed record's, or a new one.
func (m *Maps) Values(n int) []any {
	if m != nil {
		select {
		case v := <-m.values:
			if cap(v) >= n {
				v = v[:n]
				clear(v)
				return v
			}
		default:
		}
	}
	return make([]any, n)
}

func (m *Maps) put(r plinth.Record) {
	if m == nil {
		return
	}
	if r.Data != nil {
		select {
		case m.maps <- r.Data:
		default:
		}
	}
	if r.Values != nil {
		select {
		case m.values <- r.Values:
		default:
		}
	}
}
