package libvirt

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// suspendMu serializes suspensions: at most one guest of this process is
// paused at any time.
var suspendMu sync.Mutex

// agentChannel is the virtio-serial channel name of the QEMU guest agent.
const agentChannel = "org.qemu.guest_agent.0"

// atPointInTime runs the pre command, makes the guest consistent as far as
// asked and possible, calls fix (which fixes the point in time: starts the
// backup job or takes the snapshot), undoes the freeze or suspension at
// once, and runs the post command. It records the level achieved.
func (j *job) atPointInTime(ctx context.Context, fix func() error) error {
	j.res.Consistency = "crash"
	if err := j.hook(ctx, "pre", j.o.Pre); err != nil {
		return err
	}
	defer j.hook(context.WithoutCancel(ctx), "post", j.o.Post)
	if j.o.Quiesce {
		thaw, frozen := j.freeze()
		if thaw != nil {
			defer thaw(context.WithoutCancel(ctx))
		}
		if frozen {
			j.res.Consistency = "filesystem"
		}
	} else if state, ok := j.agent(); ok {
		if state == "connected" {
			j.noteOnce("the guest agent is connected but --quiesce was not given: the guest file systems are not frozen, the backup is not filesystem-consistent (add --quiesce)")
		} else {
			j.noteOnce("the domain has a guest agent channel (%s) but --quiesce was not given: the backup is not filesystem-consistent (run qemu-ga in the guest and add --quiesce)", agentChannel)
		}
	}
	if j.o.Suspend && j.res.Consistency == "crash" {
		return j.whileSuspended(fix)
	}
	return fix()
}

// freeze freezes the guest file systems through the guest agent (libvirt
// sends guest-fsfreeze-freeze to qemu-ga). It returns the thaw to run as
// soon as the point in time is fixed (nil when there is nothing to undo)
// and whether the backup is filesystem-consistent: an agent that froze no
// file system (none it can freeze is mounted) leaves it crash-consistent.
func (j *job) freeze() (thaw func(context.Context), frozen bool) {
	start := time.Now()
	n, err := j.c.L.DomainFsfreeze(j.dom, nil, 0)
	if err != nil {
		if transient(err) {
			// libvirt gave up waiting, but the agent may still freeze:
			// thawing a guest that is not frozen does nothing.
			j.c.L.DomainFsthaw(j.dom, nil, 0)
		}
		j.note("cannot quiesce: the guest agent did not freeze the file systems (%v); the backup is crash-consistent", firstLine(err))
		return nil, false
	}
	thaw = func(ctx context.Context) {
		// qemu-ga stays frozen (and refuses most commands) until thawed,
		// also when it froze nothing: always thaw, retrying a slow agent.
		err := retry(ctx, j.o.Retries, func() error {
			_, err := j.c.L.DomainFsthaw(j.dom, nil, 0)
			return err
		})
		if err != nil {
			j.note("thawing the guest file systems failed: %v; the guest's writes are blocked until they are thawed: run `virsh domfsthaw %s`", firstLine(err), j.name)
			return
		}
		if n > 0 {
			j.note("%d guest file system(s) frozen through the guest agent for %s", n, time.Since(start).Round(time.Millisecond))
		}
	}
	if n == 0 {
		j.note("the guest agent froze no file system (none that it can freeze is mounted in the guest): the backup is crash-consistent")
		return thaw, false
	}
	return thaw, true
}

// agent reports whether the domain has a guest agent channel and its state
// when the backup started ("connected", "disconnected" or "" when libvirt
// does not say).
func (j *job) agent() (state string, ok bool) {
	if j.xml == nil || j.xml.Devices == nil {
		return "", false
	}
	for _, ch := range j.xml.Devices.Channels {
		if t := ch.Target; t != nil && t.VirtIO != nil && t.VirtIO.Name == agentChannel {
			return t.VirtIO.State, true
		}
	}
	return "", false
}

// noteOnce notes msg unless it is noted already (the point in time is
// taken twice when a broken checkpoint chain forces a full backup).
func (j *job) noteOnce(format string, a ...any) {
	if slices.Contains(j.res.Notes, fmt.Sprintf(format, a...)) {
		return
	}
	j.note(format, a...)
}

// whileSuspended pauses the guest, calls fix and resumes the guest, with a
// bound: once MaxSuspend has passed, the guest is resumed even if the
// point in time is not fixed yet, and the backup is only crash-consistent.
// The bound's resume never runs while fix talks to libvirt: resuming the
// guest while libvirt set up the backup job crashed QEMU 7.2 (an assertion
// in blk_ref). A fix that is under way when the bound passes finishes
// first; the guest then stayed paused longer than the bound, with the
// point fixed, and a note says so.
func (j *job) whileSuspended(fix func() error) error {
	suspendMu.Lock()
	if err := j.c.L.DomainSuspend(j.dom); err != nil {
		suspendMu.Unlock()
		return fmt.Errorf("suspend domain %s: %w", j.name, err)
	}
	start := time.Now()
	var mu sync.Mutex // held by fix and by the bound's resume
	resumed, expired, fixed := false, false, false
	var resumeErr error
	resume := func() { // with mu held
		if !resumed {
			resumed = true
			resumeErr = j.c.L.DomainResume(j.dom)
			suspendMu.Unlock()
		}
	}
	timer := time.AfterFunc(j.o.MaxSuspend, func() {
		mu.Lock()
		defer mu.Unlock()
		if !fixed {
			expired = true
			resume()
		}
	})
	defer timer.Stop()

	mu.Lock()
	defer mu.Unlock()
	if time.Since(start) >= j.o.MaxSuspend { // the timer has not run yet
		expired = true
		resume()
	}
	j.res.Consistency = "suspended"
	err := fix()
	fixed = true
	paused := time.Since(start)
	resume()
	if resumeErr != nil {
		j.note("resume failed: %v; resume it with `virsh resume %s`", resumeErr, j.name)
	}
	switch {
	case expired:
		j.res.Consistency = "crash"
		j.note("the guest was resumed after the suspension bound of %s, before the backup point was fixed: crash-consistent", j.o.MaxSuspend)
	case paused > j.o.MaxSuspend:
		j.note("guest suspended for %s, longer than the bound of %s: fixing the backup point was under way when the bound passed", paused.Round(time.Millisecond), j.o.MaxSuspend)
	default:
		j.note("guest suspended for %s", paused.Round(time.Millisecond))
	}
	return err
}

// hook runs a user command with the domain in its environment.
func (j *job) hook(ctx context.Context, phase, command string) error {
	if command == "" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), "CAIRN_DOMAIN="+j.name, "CAIRN_DOMAIN_UUID="+j.uuid, "CAIRN_PHASE="+phase)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("%s command failed: %v: %s", phase, err, strings.TrimSpace(string(out)))
		if phase == "pre" {
			return fmt.Errorf("domain %s: %s; no backup taken", j.name, msg)
		}
		j.note("%s", msg)
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
