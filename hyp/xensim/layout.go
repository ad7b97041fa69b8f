package xensim

import "godm/memory/layout"

// LayoutRAM returns the RAM regions of a domain whose memory is laid out
// as l: the ranges libxl's domain builder populates for an HVM guest with
// a device model (memory/layout), so that a simulated domain has RAM,
// holes and MMIO exactly where a real one does.
func LayoutRAM(l layout.Layout) []Region {
	var r []Region
	for _, x := range l.Regions() {
		r = append(r, Region{GPA: x.GPA, Size: x.Size})
	}
	return r
}
