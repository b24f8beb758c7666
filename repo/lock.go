package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LockMode says what a process may do while it holds the repository lock.
//
// Shared holders (backup, restore, mount, check, forget) may add packs and
// restore points and read anything. An Exclusive holder (prune, repair) may
// also delete and rewrite packs and restore points. The lock is an flock(2)
// on REPO/lock, so the kernel drops it when a process dies: a killed cairn
// never leaves a stale lock behind.
type LockMode int

const (
	Shared LockMode = iota
	Exclusive
)

func (m LockMode) String() string {
	if m == Exclusive {
		return "exclusive"
	}
	return "shared"
}

// Lock is a held repository lock.
type Lock struct {
	f        *os.File
	infoPath string
}

type lockInfo struct {
	Mode    string    `json:"mode"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

// Lock takes the repository lock in mode, waiting up to wait for
// conflicting holders to finish. what describes the operation for other
// processes' error messages.
func (r *Repository) Lock(ctx context.Context, mode LockMode, wait time.Duration, what string) (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(r.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	how := unix.LOCK_SH
	if mode == Exclusive {
		how = unix.LOCK_EX
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s needs the %s lock, held by: %s; wait for it to finish or pass --lock-wait",
				ErrLocked, what, mode, r.describeHolders())
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	host, _ := os.Hostname()
	info, _ := json.Marshal(lockInfo{Mode: mode.String(), Host: host, PID: os.Getpid(), Command: what, Since: time.Now().UTC()})
	l := &Lock{f: f, infoPath: filepath.Join(r.dir, "locks", fmt.Sprintf("%s-%d-%s.json", host, os.Getpid(), randomHex(4)))}
	// Written under another name and renamed, so readers never see a
	// half-written record.
	tmp := l.infoPath + ".tmp"
	if os.WriteFile(tmp, info, 0o600) != nil || os.Rename(tmp, l.infoPath) != nil {
		os.Remove(tmp)
		l.infoPath = "" // informational only
	}
	return l, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	if l.infoPath != "" {
		os.Remove(l.infoPath)
	}
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}

// describeHolders lists the live processes recorded in REPO/locks.
func (r *Repository) describeHolders() string {
	names, _ := filepath.Glob(filepath.Join(r.dir, "locks", "*.json"))
	host, _ := os.Hostname()
	var out []string
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		var li lockInfo
		if json.Unmarshal(raw, &li) != nil {
			continue
		}
		if li.Host == host && !processAlive(li.PID) {
			os.Remove(name) // left by a killed process; the flock itself is gone
			continue
		}
		out = append(out, fmt.Sprintf("%s (%s lock, pid %d on %s, since %s)", li.Command, li.Mode, li.PID, li.Host, li.Since.Format(time.RFC3339)))
	}
	if len(out) == 0 {
		return "another process"
	}
	return strings.Join(out, "; ")
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
