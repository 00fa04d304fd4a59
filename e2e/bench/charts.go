package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// palette colours the series of a chart.
var palette = []color.Color{
	color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff},
	color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff},
	color.RGBA{R: 0x55, G: 0xa8, B: 0x68, A: 0xff},
	color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff},
}

// writeOutputs writes results.md and the charts into o.out, and every
// sample to o.json when set.
func writeOutputs(o options, machine string, results []sample, methods []string) error {
	if o.json != "" {
		data, err := json.Marshal(map[string]any{"machine": machine, "when": time.Now().UTC().Format(time.RFC3339),
			"options": fmt.Sprintf("%+v", o), "results": results})
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.json, data, 0o644); err != nil {
			return err
		}
	}
	if o.out == "" {
		return nil
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	scs := strings.Split(o.scenarios, ",")
	var md strings.Builder
	fmt.Fprintf(&md, "Machine: %s.\n\n", machine)
	fmt.Fprintf(&md, "%d repetitions (+%d warm-up) of every method in every scenario, interleaved; %d RTTs per run; "+
		"one %d-byte message and %d × 64 KiB messages; the hop adds %s of round-trip time.\n",
		o.reps, o.warmup, o.rtts, o.bigSize, o.smallCount, o.hopRTT)
	md.WriteString(table(results, methods, scs) + "\nWhere the time to the first cell goes:\n\n" + breakdown(results, methods, scs))
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	charts := []struct {
		name string
		draw func() (*plot.Plot, error)
	}{
		{"first-cell.png", func() (*plot.Plot, error) { return firstCellChart(results, methods, scs) }},
		{"throughput.png", func() (*plot.Plot, error) { return throughputChart(results, methods) }},
	}
	for _, sc := range scs {
		charts = append(charts, struct {
			name string
			draw func() (*plot.Plot, error)
		}{"rtt-" + sc + ".png", func() (*plot.Plot, error) { return rttChart(results, methods, sc) }})
	}
	for _, c := range charts {
		p, err := c.draw()
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, filepath.Join(o.out, c.name)); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// groupedBars draws one bar group per method, one bar per series.
func groupedBars(p *plot.Plot, methods []string, series []string, value func(series, method string) float64) error {
	w := vg.Points(60 / float64(max(len(series), 1)))
	for i, s := range series {
		vals := make(plotter.Values, len(methods))
		for j, m := range methods {
			vals[j] = value(s, m)
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
		p.Add(bars)
		p.Legend.Add(s, bars)
	}
	p.Legend.Top = true
	p.Y.Min = 0
	p.Y.Max *= 1.25 // room for the legend
	p.NominalX(methods...)
	return nil
}

// firstCellChart: median time to the first executed cell per method,
// one bar per scenario.
func firstCellChart(results []sample, methods, scs []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Time to first executed cell (median; lower is better)"
	p.Y.Label.Text = "seconds"
	err := groupedBars(p, methods, scs, func(sc, m string) float64 {
		if s := summarize(results, m, sc); s != nil {
			return s.firstMed
		}
		return 0
	})
	return p, err
}

// throughputChart: iopub MB/s on loopback, large message and 64 KiB.
func throughputChart(results []sample, methods []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "iopub throughput on loopback (median; higher is better)"
	p.Y.Label.Text = "MB/s"
	err := groupedBars(p, methods, []string{"one large message", "64 KiB messages"}, func(series, m string) float64 {
		s := summarize(results, m, "loopback")
		switch {
		case s == nil:
			return 0
		case strings.HasPrefix(series, "one"):
			return s.bigMed
		}
		return s.smMed
	})
	return p, err
}

// rttChart: the distribution of execute RTTs per method, idle and busy,
// as box plots.
func rttChart(results []sample, methods []string, sc string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Execute round trip, " + sc + " (box: quartiles, whiskers: 1.5 IQR)"
	p.Y.Label.Text = "ms"
	w := vg.Points(22)
	var names []string
	for i, series := range []string{"idle", "busy iopub"} {
		x := 0
		for _, m := range methods {
			s := summarize(results, m, sc)
			if s == nil {
				continue
			}
			vals := plotter.Values(s.reply)
			if i == 1 {
				vals = plotter.Values(s.busyReply)
			}
			if len(vals) == 0 {
				continue
			}
			box, err := plotter.NewBoxPlot(w, float64(x), vals)
			if err != nil {
				return nil, err
			}
			box.Offset = w * vg.Length(float64(i)-0.5) * 1.1
			box.FillColor = palette[i]
			p.Add(box)
			if x == 0 {
				sw, err := plotter.NewBarChart(plotter.Values{0}, 1)
				if err != nil {
					return nil, err
				}
				sw.Color = palette[i]
				p.Legend.Add(series, sw)
			}
			if i == 0 {
				names = append(names, m)
			}
			x++
		}
	}
	p.Legend.Top = true
	p.Y.Max *= 1.2 // room for the legend
	p.NominalX(names...)
	return p, nil
}
