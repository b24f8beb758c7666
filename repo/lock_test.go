package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLocks(t *testing.T) {
	r := newTestRepo(t, false)
	r2 := reopen(t, r) // a second process
	ctx := context.Background()

	s1, err := r.Lock(ctx, Shared, 0, "backup vm-one")
	if err != nil {
		t.Fatalf("first shared lock: %v", err)
	}
	s2, err := r2.Lock(ctx, Shared, 0, "restore vm-two")
	if err != nil {
		t.Fatalf("second shared lock while one is held: %v", err)
	}

	start := time.Now()
	_, err = r2.Lock(ctx, Exclusive, 300*time.Millisecond, "prune")
	waited := time.Since(start)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock while shared ones are held: %v", err)
	}
	if waited < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the 300ms wait", waited)
	}
	for _, want := range []string{"prune needs", "exclusive lock, held by", "backup vm-one", "restore vm-two", "shared lock", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err, want)
		}
	}

	if err := s1.Unlock(); err != nil {
		t.Fatal(err)
	}
	_, err = r.Lock(ctx, Exclusive, 0, "prune")
	if !errors.Is(err, ErrLocked) || strings.Contains(err.Error(), "backup vm-one") || !strings.Contains(err.Error(), "restore vm-two") {
		t.Fatalf("exclusive with one shared left: %v", err)
	}
	if err := s2.Unlock(); err != nil {
		t.Fatal(err)
	}
	if infos, _ := filepath.Glob(filepath.Join(r.Dir(), "locks", "*")); len(infos) != 0 {
		t.Errorf("lock info files left after unlock: %v", infos)
	}

	ex, err := r.Lock(ctx, Exclusive, 0, "prune")
	if err != nil {
		t.Fatalf("exclusive lock after unlock: %v", err)
	}
	// Nobody else gets in, shared or exclusive.
	if _, err := r2.Lock(ctx, Shared, 0, "backup"); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "prune (exclusive lock") {
		t.Fatalf("shared lock under an exclusive one: %v", err)
	}
	if _, err := r2.Lock(ctx, Exclusive, 0, "repair"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: %v", err)
	}
	if err := ex.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := ex.Unlock(); err != nil { // idempotent
		t.Fatal(err)
	}
	var nilLock *Lock
	if err := nilLock.Unlock(); err != nil {
		t.Fatal(err)
	}
	l, err := r2.Lock(ctx, Shared, 0, "backup")
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}

func TestLockWaitsForRelease(t *testing.T) {
	r := newTestRepo(t, false)
	r2 := reopen(t, r)
	ctx := context.Background()
	sh, err := r.Lock(ctx, Shared, 0, "backup")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		sh.Unlock()
	}()
	ex, err := r2.Lock(ctx, Exclusive, 5*time.Second, "prune")
	if err != nil {
		t.Fatalf("exclusive lock did not get the lock once released: %v", err)
	}
	ex.Unlock()
}

func TestLockContextCancel(t *testing.T) {
	r := newTestRepo(t, false)
	r2 := reopen(t, r)
	ex, err := r.Lock(context.Background(), Exclusive, 0, "prune")
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = r2.Lock(ctx, Shared, time.Minute, "backup")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("lock wait ignored the context")
	}
}

func TestLockStaleInfoIgnored(t *testing.T) {
	// The info file of a dead process is not reported as a holder, and is
	// cleaned up; the flock of a dead process is gone anyway.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a child process: %v", err)
	}
	dead := cmd.Process.Pid
	r := newTestRepo(t, false)
	host, _ := os.Hostname()
	info, _ := json.Marshal(lockInfo{Mode: "exclusive", Host: host, PID: dead, Command: "ghost-prune", Since: time.Now()})
	stale := filepath.Join(r.Dir(), "locks", fmt.Sprintf("%s-%d-abcd.json", host, dead))
	if err := os.WriteFile(stale, info, 0o600); err != nil {
		t.Fatal(err)
	}
	sh, err := r.Lock(context.Background(), Shared, 0, "live-backup")
	if err != nil {
		t.Fatalf("stale info file blocked a lock: %v", err)
	}
	defer sh.Unlock()
	_, err = reopen(t, r).Lock(context.Background(), Exclusive, 0, "prune")
	if !errors.Is(err, ErrLocked) || strings.Contains(err.Error(), "ghost-prune") || !strings.Contains(err.Error(), "live-backup") {
		t.Fatalf("holders: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale lock info not removed: %v", err)
	}
}
