package hyptest

import "testing"

func TestSimulatedXen(t *testing.T) {
	Run(t, Simulated(t))
}

func TestRealXen(t *testing.T) {
	Run(t, RealXen(t))
}
