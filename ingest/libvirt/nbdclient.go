package libvirt

import (
	"context"
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/ingest/nbd"
)

// nbdExport is an export opened with the project's NBD client.
type nbdExport struct {
	c    *nbd.Client
	stop func() // ends the SSH forwarding, if any
	once sync.Once
}

// dialExport opens one NBD export on a unix socket of the hypervisor with
// the meta contexts the backup needs; a context the server refuses is an
// error (a dirty bitmap that is not there must not read as "unchanged").
func dialExport(h host, sock, name string, contexts []string) (export, error) {
	local, stop, err := forward(h, sock)
	if err != nil {
		return nil, err
	}
	c, err := nbd.Dial(context.Background(), "unix", local, name, &nbd.Options{MetaContexts: contexts})
	if err != nil {
		stop()
		return nil, err
	}
	for _, mc := range contexts {
		if !c.HasMetaContext(mc) {
			c.Close()
			stop()
			return nil, fmt.Errorf("the NBD server does not offer %s (it offers %q)", mc, c.MetaContexts())
		}
	}
	return &nbdExport{c: c, stop: stop}, nil
}

func (e *nbdExport) Size() int64                             { return e.c.Size() }
func (e *nbdExport) ReadAt(p []byte, off int64) (int, error) { return e.c.ReadAt(p, off) }

func (e *nbdExport) BlockStatus(mc string, off, length int64, fn func(off, length int64, flags uint32) error) error {
	ext, err := e.c.BlockStatus(context.Background(), off, length, mc)
	if err != nil {
		return err
	}
	for _, x := range ext {
		if err := fn(x.Offset, x.Length, x.Flags); err != nil {
			return err
		}
	}
	return nil
}

func (e *nbdExport) Close() error {
	err := e.c.Close()
	e.once.Do(e.stop)
	return err
}
