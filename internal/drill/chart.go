//go:build !noplot

package drill

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Charts says whether this binary draws the report's chart: false when
// it was built with -tags noplot (chart_noplot.go), which leaves the
// plotting libraries out of the binary.
const Charts = true

// The chart's colours, one per outcome in stacking order, and the rest.
var (
	outcomeColors = []color.NRGBA{
		{R: 0x2e, G: 0x9e, B: 0x4f, A: 0xff}, // ok
		{R: 0x4f, G: 0x7c, B: 0xc9, A: 0xff}, // client error
		{R: 0xe8, G: 0xc0, B: 0x2a, A: 0xff}, // shed
		{R: 0xf0, G: 0x8a, B: 0x24, A: 0xff}, // overloaded
		{R: 0xd6, G: 0x34, B: 0x2c, A: 0xff}, // failed
		{R: 0x7b, G: 0x3f, B: 0xa0, A: 0xff}, // client timeout
	}
	outcomeLabels = []string{"ok", "4xx (401)", "503 shed", "503 overloaded", "other 5xx", "client timeout"}
	outageColor   = color.NRGBA{R: 0x80, G: 0x80, B: 0x80, A: 0x38}
	routableColor = color.NRGBA{R: 0x1b, G: 0x5e, B: 0x20, A: 0xff}
	runningColor  = color.NRGBA{R: 0x90, G: 0x90, B: 0x90, A: 0xff}
	replaceColor  = color.NRGBA{R: 0xd6, G: 0x34, B: 0x2c, A: 0xff}
)

// chart size: per profile, an outcome panel above an instance panel.
const (
	chartWidth   = 26 * vg.Centimeter
	outcomeRowH  = 8 * vg.Centimeter
	instanceRowH = 4.2 * vg.Centimeter
)

// writeChart renders the report's chart to path, as SVG or PNG by its
// extension.
func (rep *Report) writeChart(path string, png bool) error {
	plots := rep.chartPlots()
	h := vg.Length(0)
	for range rep.Profiles {
		h += outcomeRowH + instanceRowH
	}
	var canvas vg.CanvasWriterTo
	if png {
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(chartWidth, h), vgimg.UseDPI(110))}
	} else {
		canvas = vgsvg.New(chartWidth, h)
	}
	dc := draw.New(canvas)
	// Rows of unequal height, each profile's outcome panel above its
	// instance panel; the data areas are aligned on the time axis.
	var cells []draw.Canvas
	var flat []*plot.Plot
	top := dc.Max.Y
	for i := range rep.Profiles {
		for j, hh := range []vg.Length{outcomeRowH, instanceRowH} {
			cells = append(cells, draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
				Min: vg.Point{X: dc.Min.X, Y: top - hh},
				Max: vg.Point{X: dc.Max.X, Y: top},
			}})
			flat = append(flat, plots[i][j])
			top -= hh
		}
	}
	var left, right vg.Length
	for i, p := range flat {
		d := p.DataCanvas(cells[i])
		left, right = max(left, d.Min.X-cells[i].Min.X), max(right, cells[i].Max.X-d.Max.X)
	}
	for i, p := range flat {
		d := p.DataCanvas(cells[i])
		l, r := d.Min.X-cells[i].Min.X, cells[i].Max.X-d.Max.X
		p.Draw(draw.Crop(cells[i], left-l, -(right - r), 0, 0))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// chartPlots returns, per profile, its outcome plot and its instance plot,
// on the same time axis.
func (rep *Report) chartPlots() [][2]*plot.Plot {
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	sc := rep.Scenario
	w := sc.Window()
	xmax := sc.Duration().Seconds()
	ymax := 0.0
	for _, pr := range rep.Profiles {
		for _, s := range pr.Seconds {
			ymax = max(ymax, float64(s.Offered))
		}
	}
	ymax = niceCeil(ymax * 1.08)
	var out [][2]*plot.Plot
	for _, pr := range rep.Profiles {
		top := plot.New()
		top.Title.Text = fmt.Sprintf("%s profile: %s", pr.Profile, pr.Summary.headline(sc))
		top.Title.TextStyle.Font.Size = vg.Points(12)
		top.Y.Label.Text = "attempts started per second"
		top.X.Min, top.X.Max, top.Y.Min, top.Y.Max = 0, xmax, 0, ymax
		top.Add(shade(w.Start.Seconds(), w.End.Seconds(), 0, ymax))
		layers := stackLayers(pr.Seconds)
		for i := range layers {
			poly, err := plotter.NewPolygon(layers[i])
			if err != nil {
				continue
			}
			poly.Color = outcomeColors[i]
			poly.LineStyle.Width = 0
			top.Add(poly)
			top.Legend.Add(outcomeLabels[i], poly)
		}
		top.Legend.Top, top.Legend.Left = true, true
		top.Legend.XOffs = vg.Points(6)
		top.Legend.TextStyle.Font.Size = vg.Points(8)
		top.Legend.ThumbnailWidth = vg.Points(10)
		top.Add(plotter.NewGrid())
		top.X.Tick.Marker = secondTicks{}

		bot := plot.New()
		n := float64(sc.Fleet.Instances)
		bot.Y.Min, bot.Y.Max = 0, n+2.6
		bot.X.Min, bot.X.Max = 0, xmax
		bot.X.Label.Text = fmt.Sprintf("seconds since the load started (grey: backend %s)", outageWord(sc))
		bot.Y.Label.Text = "instances"
		bot.Add(shade(w.Start.Seconds(), w.End.Seconds(), 0, n+2.6))
		run, rt := make(plotter.XYs, 0, len(pr.Samples)), make(plotter.XYs, 0, len(pr.Samples))
		var marks plotter.XYs
		prev := -1
		for _, s := range pr.Samples {
			if s.T < 0 || s.T > xmax {
				continue
			}
			run = append(run, plotter.XY{X: s.T, Y: float64(s.Running)})
			rt = append(rt, plotter.XY{X: s.T, Y: float64(s.Routable)})
			if prev >= 0 && s.Replacements > prev {
				marks = append(marks, plotter.XY{X: s.T, Y: n + 0.7})
			}
			prev = s.Replacements
		}
		if len(run) > 1 {
			l, _ := plotter.NewLine(run)
			l.StepStyle = plotter.PostStep
			l.Color, l.Width, l.Dashes = runningColor, vg.Points(1.2), []vg.Length{vg.Points(3), vg.Points(2)}
			bot.Add(l)
			bot.Legend.Add("running", l)
			l2, _ := plotter.NewLine(rt)
			l2.StepStyle = plotter.PostStep
			l2.Color, l2.Width = routableColor, vg.Points(2)
			bot.Add(l2)
			bot.Legend.Add("routable", l2)
		}
		if len(marks) > 0 {
			sct, _ := plotter.NewScatter(marks)
			sct.GlyphStyle.Shape = draw.CrossGlyph{}
			sct.GlyphStyle.Color = replaceColor
			sct.GlyphStyle.Radius = vg.Points(3)
			bot.Add(sct)
			bot.Legend.Add(fmt.Sprintf("replacement (%d in all)", pr.Summary.Replacements), sct)
		}
		bot.Legend.Top, bot.Legend.Left = true, true
		bot.Legend.XOffs = vg.Points(6)
		bot.Legend.TextStyle.Font.Size = vg.Points(8)
		bot.Legend.ThumbnailWidth = vg.Points(14)
		bot.Y.Tick.Marker = integerTicks{}
		bot.X.Tick.Marker = secondTicks{}
		bot.Add(plotter.NewGrid())
		out = append(out, [2]*plot.Plot{top, bot})
	}
	return out
}

// headline is a profile's outcome in a few words, for the chart.
func (s Summary) headline(sc *Scenario) string {
	if s.Recovered {
		return fmt.Sprintf("recovered %gs after the backend returned; %d replacements", *s.TimeToRecoverS, s.Replacements)
	}
	return fmt.Sprintf("not recovered in the %s observed after the backend returned; %d replacements", sc.Duration()-sc.Window().End, s.Replacements)
}

func outageWord(sc *Scenario) string {
	w := sc.Window()
	_, mode := sc.phaseAt(w.Start)
	if mode == "up" {
		return "disruption"
	}
	return mode
}

// shade is a grey band over [x0, x1].
func shade(x0, x1, y0, y1 float64) plot.Plotter {
	p, _ := plotter.NewPolygon(plotter.XYs{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
	p.Color = outageColor
	p.LineStyle.Width = 0
	return p
}

// stackLayers returns, per outcome, the polygon of its band in the stack:
// second k spans [k, k+1).
func stackLayers(secs []Second) []plotter.XYs {
	vals := func(s Second) []float64 {
		return []float64{float64(s.OK), float64(s.ClientError), float64(s.Shed), float64(s.Overloaded), float64(s.Failed), float64(s.ClientTimeout)}
	}
	layers := make([]plotter.XYs, len(outcomeLabels))
	for i := range layers {
		var upper, lower plotter.XYs
		for _, s := range secs {
			v := vals(s)
			lo := 0.0
			for _, x := range v[:i] {
				lo += x
			}
			hi := lo + v[i]
			x0, x1 := float64(s.T), float64(s.T+1)
			upper = append(upper, plotter.XY{X: x0, Y: hi}, plotter.XY{X: x1, Y: hi})
			lower = append(lower, plotter.XY{X: x0, Y: lo}, plotter.XY{X: x1, Y: lo})
		}
		for j := len(lower) - 1; j >= 0; j-- {
			upper = append(upper, lower[j])
		}
		layers[i] = upper
	}
	return layers
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// secondTicks labels every 10 seconds.
type secondTicks struct{}

func (secondTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for x := 0.0; x <= max; x += 5 {
		if x < min {
			continue
		}
		t := plot.Tick{Value: x}
		if int(x)%10 == 0 {
			t.Label = fmt.Sprintf("%g", x)
		}
		ts = append(ts, t)
	}
	return ts
}

// integerTicks labels each whole number.
type integerTicks struct{}

func (integerTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for x := 0.0; x <= math.Floor(max-1); x++ {
		if x >= min {
			ts = append(ts, plot.Tick{Value: x, Label: fmt.Sprintf("%g", x)})
		}
	}
	return ts
}
