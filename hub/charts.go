package hub

import (
	"fmt"
	"html"
	"html/template"
	"slices"
	"strings"
	"time"
)

// chartDays is how many days the access charts show.
const chartDays = 30

// palette colours chart series: each has at least 3:1 contrast with white
// (WCAG 2.2 non-text contrast), and the legend and data table name them.
var palette = []string{"#1d4f91", "#00703c", "#b10e1e", "#6f3c96", "#7a4d00", "#505a5f"}

// series is one line of a chart: a value per day.
type series struct {
	Name   string
	Values []int
}

// chart is one chart of the access review: days and series, drawn as
// stacked bars in SVG on the server (no script, nothing loaded from
// elsewhere), with a text summary and the data as a table.
type chart struct {
	ID, Title, Unit string
	Days            []time.Time
	Series          []series
	Legend          bool // name the series (the consumers) beside the chart
}

// total is the sum over all series and days.
func (c chart) total() int {
	n := 0
	for _, s := range c.Series {
		for _, v := range s.Values {
			n += v
		}
	}
	return n
}

// dayTotals are the stacked heights.
func (c chart) dayTotals() []int {
	out := make([]int, len(c.Days))
	for _, s := range c.Series {
		for i, v := range s.Values {
			out[i] += v
		}
	}
	return out
}

// Summary says in words what the chart shows, for its description.
func (c chart) Summary() string {
	totals := c.dayTotals()
	peak, at := 0, -1
	for i, v := range totals {
		if v > peak {
			peak, at = v, i
		}
	}
	if at < 0 {
		return fmt.Sprintf("None in the last %d days.", len(c.Days))
	}
	return fmt.Sprintf("%d %s in the last %d days; the most, %d, on %s.", c.total(), c.Unit, len(c.Days), peak, c.Days[at].Format("2 January"))
}

// Colour is the colour of the i-th series.
func (c chart) Colour(i int) string { return palette[i%len(palette)] }

// SVG draws the chart.
func (c chart) SVG() template.HTML {
	const w, h, left, bottom, top = 720, 220, 48, 28, 10
	totals := c.dayTotals()
	peak := max(slices.Max(append(totals, 0)), 1)
	plotW, plotH := float64(w-left-8), float64(h-bottom-top)
	barW := plotW / float64(max(len(c.Days), 1))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" xmlns="http://www.w3.org/2000/svg">`, w, h, c.ID, c.ID)
	fmt.Fprintf(&b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, c.ID, html.EscapeString(c.Title), c.ID, html.EscapeString(c.Summary()))
	// Axis and its labels: zero and the peak; a day a week, and the last.
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#1b1b1b"/>`, left, h-bottom, w-8, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="12" fill="#1b1b1b">0</text>`, left-6, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" font-size="12" fill="#1b1b1b">%d</text>`, left-6, top+10, peak)
	for i, d := range c.Days {
		x := float64(left) + float64(i)*barW
		y := float64(h - bottom)
		for si, s := range c.Series {
			v := s.Values[i]
			if v == 0 {
				continue
			}
			bh := plotH * float64(v) / float64(peak)
			y -= bh
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %d</title></rect>`,
				x+1, y, max(barW-2, 1), bh, c.Colour(si), d.Format("2 Jan"), html.EscapeString(s.Name), v)
		}
		if i%7 == 0 || (i == len(c.Days)-1 && i%7 >= 3) {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="12" fill="#1b1b1b">%s</text>`, x+barW/2, h-8, d.Format("2 Jan"))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it is escaped above
}

// accessCharts are the review's charts of actual access to one API.
type accessCharts struct {
	Requests, Records, Denied, Special chart
}

// newAccessCharts makes empty charts of the chartDays days up to today.
func newAccessCharts(now time.Time) *accessCharts {
	today := now.UTC().Truncate(24 * time.Hour)
	days := make([]time.Time, chartDays)
	for i := range days {
		days[i] = today.AddDate(0, 0, i-chartDays+1)
	}
	one := func(id, title, unit, name string) chart {
		return chart{ID: id, Title: title, Unit: unit, Days: days, Series: []series{{Name: name, Values: make([]int, chartDays)}}}
	}
	return &accessCharts{
		Requests: chart{ID: "chart-requests", Title: "Requests per consumer per day", Unit: "requests", Days: days, Legend: true},
		Records:  one("chart-records", "Records returned per day", "records returned", "records"),
		Denied:   one("chart-denied", "Denied requests per day", "denied requests", "denied"),
		Special:  one("chart-special", "Records with special-category fields returned per day", "records with special-category fields", "records"),
	}
}

// day is the index of t's day in the charts, or -1.
func (ac *accessCharts) day(t time.Time) int {
	d := ac.Records.Days
	i := int(t.UTC().Sub(d[0]) / (24 * time.Hour))
	if t.Before(d[0]) || i >= len(d) {
		return -1
	}
	return i
}

// addRequest counts one request of a consumer: the first five consumers
// seen get a series each, the rest share one ("others").
func (ac *accessCharts) addRequest(i int, consumer string) {
	c := &ac.Requests
	at := slices.IndexFunc(c.Series, func(s series) bool { return s.Name == consumer })
	if at < 0 {
		if len(c.Series) >= len(palette)-1 {
			consumer = "others"
			at = slices.IndexFunc(c.Series, func(s series) bool { return s.Name == consumer })
		}
		if at < 0 {
			c.Series = append(c.Series, series{Name: consumer, Values: make([]int, len(c.Days))})
			at = len(c.Series) - 1
		}
	}
	c.Series[at].Values[i]++
}

// All lists the charts in the order shown.
func (ac *accessCharts) All() []chart { return []chart{ac.Requests, ac.Records, ac.Denied, ac.Special} }
