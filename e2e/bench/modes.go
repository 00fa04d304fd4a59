package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// modes runs the scale, footprint and manager modes that were asked for, prints
// their tables and, with -out, writes them to modes.md there.
func (b *bench) modes() error {
	var md strings.Builder
	if b.o.scale > 0 {
		rep, err := b.runScale(b.scaleSc, b.kqBin, b.o.scale)
		if err != nil {
			return err
		}
		printScale(&md, rep)
	}
	if b.o.footprint > 0 {
		fps, err := b.footprints(b.fpSc, b.o.footprint, b.o.reps)
		if len(fps) > 0 {
			printFootprints(&md, b.o.footprint, fps)
		}
		if err != nil {
			fmt.Print(md.String())
			return err
		}
	}
	if b.o.manager > 0 {
		runs, err := b.managerRuns(b.o.manager)
		if len(runs) > 0 {
			printManaged(&md, runs)
		}
		if err != nil {
			fmt.Print(md.String())
			return err
		}
	}
	if md.Len() == 0 {
		return nil
	}
	fmt.Print(md.String())
	if b.o.out == "" {
		return nil
	}
	if err := os.MkdirAll(b.o.out, 0o755); err != nil {
		return fmt.Errorf("modes: %w", err)
	}
	text := fmt.Sprintf("Machine: %s.\n%s", b.machine, md.String())
	if err := os.WriteFile(filepath.Join(b.o.out, "modes.md"), []byte(text), 0o644); err != nil {
		return fmt.Errorf("modes: %w", err)
	}
	return nil
}
