package lake

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
)

// Datasets of an entity, the third segment of its keys.
const (
	DatasetEvents   = "events"
	DatasetSnapshot = "snapshot"
)

// EntityPrefix is the prefix of every file of an entity:
// "{domain}/{entity}/". Each domain has a prefix of its own, so access can
// be granted per domain.
func EntityPrefix(e *plinth.Entity) string { return e.Domain.Name + "/" + e.Plural + "/" }

// SpecialPrefix is the prefix of the files of an entity's
// special-category dataset, "_special/{domain}/{entity}/": outside the
// domain's own prefix, so that access to it is granted apart.
func SpecialPrefix(e *plinth.Entity) string { return "_special/" + EntityPrefix(e) }

// PartitionPath is the Hive partition folder of a day:
// "import_year=YYYY/import_month=MM/import_day=DD/import_date=YYYYMMDD".
func PartitionPath(day time.Time) string {
	d := day.UTC()
	return fmt.Sprintf("import_year=%04d/import_month=%02d/import_day=%02d/import_date=%04d%02d%02d",
		d.Year(), d.Month(), d.Day(), d.Year(), d.Month(), d.Day())
}

// EventsPartition is the folder of the events of one day below an
// entity's prefix (EntityPrefix or SpecialPrefix).
func EventsPartition(prefix string, day time.Time) string {
	return prefix + DatasetEvents + "/" + PartitionPath(day) + "/"
}

// PartName is the name of a file of events: part-<first>-<last>.parquet,
// the first and last stream sequences it holds, zero-padded to 20 digits
// so that names sort in sequence order.
func PartName(first, last uint64) string {
	return fmt.Sprintf("part-%020d-%020d.parquet", first, last)
}

// ParsePartName returns the sequence range of a part file's name (the
// last path segment of key); ok is false for other files.
func ParsePartName(key string) (first, last uint64, ok bool) {
	name := path.Base(key)
	if !strings.HasPrefix(name, "part-") || !strings.HasSuffix(name, ".parquet") {
		return 0, 0, false
	}
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(name, "part-"), ".parquet"), "-")
	if len(parts) < 2 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(parts[0], 10, 64)
	b, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || a > b {
		return 0, 0, false
	}
	return a, b, true
}

// PartitionDay returns the day of a key's import_date=YYYYMMDD segment.
func PartitionDay(key string) (time.Time, bool) {
	i := strings.Index(key, "import_date=")
	if i < 0 || len(key) < i+len("import_date=")+8 {
		return time.Time{}, false
	}
	d, err := time.Parse("20060102", key[i+len("import_date="):i+len("import_date=")+8])
	return d, err == nil
}
