package report

import (
	"io"
	"strconv"

	"github.com/plinth-data/plinth"
)

// ndjsonEncoder writes one record per line, each exactly the API's JSON of
// the record (Entity.MarshalRecord), and ends with the line
//
//	{"@plinth":{"watermark":"…","count":N}}
type ndjsonEncoder struct {
	w     io.Writer
	e     *plinth.Entity
	buf   []byte
	ended bool
}

func newNDJSON(w io.Writer, e *plinth.Entity, _ Options) (Encoder, error) {
	return &ndjsonEncoder{w: w, e: e}, nil
}

func (n *ndjsonEncoder) Write(rec plinth.Record) error {
	if n.ended {
		return errEnded
	}
	b := append(n.e.AppendRecord(n.buf[:0], rec), '\n')
	n.buf = b
	_, err := n.w.Write(b)
	return err
}

func (n *ndjsonEncoder) End(watermark string, count int64) error {
	if n.ended {
		return errEnded
	}
	n.ended = true
	_, err := n.w.Write(AppendEndLine(nil, watermark, count))
	return err
}

// EndMember is the only member of the last line of an NDJSON report.
const EndMember = "@plinth"

// AppendEndLine appends the last line of an NDJSON report.
func AppendEndLine(b []byte, watermark string, count int64) []byte {
	b = append(b, `{"`+EndMember+`":{"watermark":`...)
	b = strconv.AppendQuote(b, watermark)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, count, 10)
	return append(b, "}}\n"...)
}

// jsonEncoder writes a JSON array of records, each exactly the API's JSON
// of the record, one per line:
//
//	[
//	{…},
//	{…}
//	]
//
// The array holds records only; the watermark and count travel as HTTP
// trailers. A cut-off export lacks the closing bracket and does not parse.
type jsonEncoder struct {
	w       io.Writer
	e       *plinth.Entity
	buf     []byte
	started bool
	ended   bool
}

func newJSON(w io.Writer, e *plinth.Entity, _ Options) (Encoder, error) {
	return &jsonEncoder{w: w, e: e}, nil
}

func (j *jsonEncoder) Write(rec plinth.Record) error {
	if j.ended {
		return errEnded
	}
	b := j.buf[:0]
	if j.started {
		b = append(b, ',', '\n')
	} else {
		b = append(b, '[', '\n')
		j.started = true
	}
	b = j.e.AppendRecord(b, rec)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

func (j *jsonEncoder) End(watermark string, count int64) error {
	if j.ended {
		return errEnded
	}
	j.ended = true
	end := "\n]\n"
	if !j.started {
		end = "[]\n"
	}
	_, err := io.WriteString(j.w, end)
	return err
}
