package xenstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Tx is a xenstore transaction. Its operations see a snapshot of the store
// plus the transaction's own changes; End commits them atomically, or
// fails with EAGAIN when another connection changed what the transaction
// touched. A Tx may be used from several goroutines, but not after End.
type Tx struct {
	c  *Client
	id uint32
}

// Start begins a transaction (XS_TRANSACTION_START).
func (c *Client) Start(ctx context.Context) (*Tx, error) {
	p, err := c.request(ctx, MsgTransactionStart, 0, []byte{0})
	if err != nil {
		return nil, fmt.Errorf("xenstore transaction-start: %w", err)
	}
	// libxenstore parses the id with strtoul(s, NULL, 0); xenstored sends
	// decimal.
	id, perr := strconv.ParseUint(string(trimNul(p)), 10, 32)
	if perr != nil || id == 0 {
		return nil, fmt.Errorf("xenstore transaction-start: %w: transaction id %q", ErrProtocol, trimNul(p))
	}
	return &Tx{c: c, id: uint32(id)}, nil
}

// ID returns the transaction id xenstored assigned.
func (t *Tx) ID() uint32 { return t.id }

// End ends the transaction: commit true applies its changes ("T"), false
// discards them ("F"). A commit that conflicted with another connection's
// changes fails with an error wrapping unix.EAGAIN; the caller may retry
// the whole transaction (see Client.Transact).
func (t *Tx) End(ctx context.Context, commit bool) error {
	arg := []byte("F\x00")
	if commit {
		arg = []byte("T\x00")
	}
	_, err := t.c.request(ctx, MsgTransactionEnd, t.id, arg)
	if err != nil {
		return fmt.Errorf("xenstore transaction-end %d: %w", t.id, err)
	}
	return nil
}

// Transact runs fn in a transaction and commits it, starting over while
// the commit (or an operation inside fn) fails with EAGAIN, until ctx is
// done. Any other error from fn aborts the transaction and is returned.
func (c *Client) Transact(ctx context.Context, fn func(tx *Tx) error) error {
	for {
		tx, err := c.Start(ctx)
		if err != nil {
			return err
		}
		err = fn(tx)
		if err != nil {
			// Abort with a fresh context so cancellation of ctx does not
			// leave the transaction open in the daemon.
			abortErr := tx.End(context.WithoutCancel(ctx), false)
			if !errors.Is(err, unix.EAGAIN) {
				return errors.Join(err, ignoreENOENT(abortErr))
			}
		} else {
			err = tx.End(ctx, true)
			if !errors.Is(err, unix.EAGAIN) {
				return err
			}
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return errors.Join(err, ctxErr)
		}
	}
}

// ignoreENOENT drops the ENOENT of aborting a transaction the daemon
// already ended (it ends a transaction that failed with EAGAIN itself).
func ignoreENOENT(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// Read is Client.Read inside the transaction.
func (t *Tx) Read(ctx context.Context, path string) ([]byte, error) {
	return t.c.read(ctx, t.id, path)
}

// Write is Client.Write inside the transaction.
func (t *Tx) Write(ctx context.Context, path string, value []byte) error {
	return t.c.write(ctx, t.id, path, value)
}

// Mkdir is Client.Mkdir inside the transaction.
func (t *Tx) Mkdir(ctx context.Context, path string) error {
	return t.c.mkdir(ctx, t.id, path)
}

// Rm is Client.Rm inside the transaction.
func (t *Tx) Rm(ctx context.Context, path string) error {
	return t.c.rm(ctx, t.id, path)
}

// Directory is Client.Directory inside the transaction.
func (t *Tx) Directory(ctx context.Context, path string) ([]string, error) {
	return t.c.directory(ctx, t.id, path)
}

// GetPerms is Client.GetPerms inside the transaction.
func (t *Tx) GetPerms(ctx context.Context, path string) ([]Perm, error) {
	return t.c.getPerms(ctx, t.id, path)
}

// SetPerms is Client.SetPerms inside the transaction.
func (t *Tx) SetPerms(ctx context.Context, path string, perms []Perm) error {
	return t.c.setPerms(ctx, t.id, path, perms)
}
