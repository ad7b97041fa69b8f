package ptdriver

import (
	"testing"

	"godm/internal/board"
)

// The driver table's name is the one the Manager accepts.
func TestDriverName(t *testing.T) {
	if board.LookupDriver(board.PassthroughDriver) == nil {
		t.Fatalf("no %s driver in the table", board.PassthroughDriver)
	}
	_, err := Adapter{}.Add(map[string]any{"driver": board.PassthroughDriver, "hostaddr": "bad"}, false)
	if err == nil {
		t.Fatal("a bad hostaddr was accepted")
	}
}
