package xenstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
)

// A device model announces itself the way QEMU does, and a toolstack
// watching the node sees it.
func Example() {
	dir, _ := os.MkdirTemp("", "xs")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "socket")
	sim := xenstored.New(xenstored.Config{})
	defer sim.Close()
	if err := sim.Listen(sock); err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	// Production code passes os.Getenv; the sim's socket stands in for
	// /var/run/xenstored/socket.
	c, err := xenstore.Open(ctx, xenstore.Config{Getenv: func(k string) string {
		if k == xenstore.EnvPath {
			return sock
		}
		return ""
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	w, _ := c.Watch(ctx, "device-model/5", "dm")
	fmt.Println(<-w.Events()) // the initial event
	_ = c.Write(ctx, "device-model/5/state", []byte("running"))
	fmt.Println(<-w.Events())
	v, _ := c.Read(ctx, "/local/domain/0/device-model/5/state")
	fmt.Println(string(v))
	// Output:
	// {device-model/5 dm}
	// {device-model/5/state dm}
	// running
}

// Transact retries the read-modify-write when another connection changed
// the node in between (EAGAIN at commit).
func ExampleClient_Transact() {
	sim := xenstored.New(xenstored.Config{})
	defer sim.Close()
	conn, _ := sim.Pipe(0)
	c := xenstore.New(conn)
	defer c.Close()
	ctx := context.Background()

	_ = c.Write(ctx, "/counter", []byte("41"))
	err := c.Transact(ctx, func(tx *xenstore.Tx) error {
		v, err := tx.Read(ctx, "/counter")
		if err != nil {
			return err
		}
		var n int
		fmt.Sscan(string(v), &n)
		return tx.Write(ctx, "/counter", []byte(fmt.Sprint(n+1)))
	})
	v, _ := c.Read(ctx, "/counter")
	fmt.Println(string(v), err)
	// Output: 42 <nil>
}
