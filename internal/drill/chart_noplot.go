//go:build noplot

package drill

// Charts says whether this binary draws the report's chart: false in this
// build (-tags noplot), which leaves gonum.org/v1/plot and its fonts out
// of the binary; the report is then timeline.json, summary.json and
// report.md, without timeline.svg and timeline.png.
const Charts = false

// writeChart is never called in a build without plots (Write checks
// Charts first).
func (rep *Report) writeChart(string, bool) error { return nil }
