package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/sys/unix"
)

// inProcess holds the domains this process backs up right now.
var (
	inProcessMu sync.Mutex
	inProcess   = map[string]bool{}
)

// lockDomain serializes backups of one domain: libvirt allows one backup
// job per domain. Within the process by a set, across processes on this
// machine by an flock'd file keyed by the hypervisor and the domain UUID.
func lockDomain(uri, uuid, name string) (func(), error) {
	sum := sha256.Sum256([]byte(uri + "\x00" + uuid))
	key := hex.EncodeToString(sum[:8])
	inProcessMu.Lock()
	if inProcess[key] {
		inProcessMu.Unlock()
		return nil, fmt.Errorf("domain %s is already being backed up by this process", name)
	}
	inProcess[key] = true
	inProcessMu.Unlock()
	release := func() {
		inProcessMu.Lock()
		delete(inProcess, key)
		inProcessMu.Unlock()
	}
	path := filepath.Join(os.TempDir(), "cairn-libvirt-"+key+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("lock for domain %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		release()
		return nil, fmt.Errorf("domain %s is being backed up by another cairn process (lock %s)", name, path)
	}
	return func() { f.Close(); release() }, nil
}

// transient reports libvirt errors worth another attempt.
func transient(err error) bool {
	var le golibvirt.Error
	if errors.As(err, &le) {
		switch golibvirt.ErrorNumber(le.Code) {
		case golibvirt.ErrOperationTimeout, golibvirt.ErrAgentUnresponsive:
			return true
		}
	}
	return err != nil && strings.Contains(err.Error(), "cannot acquire state change lock")
}

// retry runs fn up to attempts times while it fails transiently.
func retry(ctx context.Context, attempts int, fn func() error) error {
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil || !transient(err) {
			return err
		}
		if i == attempts-1 {
			break
		}
		select {
		case <-time.After(time.Duration(1<<i) * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("%w (gave up after %d attempts)", err, attempts)
}
