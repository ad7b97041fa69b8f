package xenstored_test

import (
	"context"
	"testing"

	"godm/hyp/kernel"
	"godm/hyp/xensim"
	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
)

func TestTmpXensim(t *testing.T) {
	store := xenstored.New(xenstored.Config{})
	defer store.Close()
	sim := xensim.New(xensim.Config{})
	defer sim.Close()
	sim.SetDevice(kernel.Xenbus, store.XenbusFile)
	c, err := xenstore.OpenXenbus(sim.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(context.Background(), "device-model/1/state", []byte("running")); err != nil {
		t.Fatal(err)
	}
	if err := store.WaitValue(context.Background(), "/local/domain/0/device-model/1/state", []byte("running")); err != nil {
		t.Fatal(err)
	}
}
