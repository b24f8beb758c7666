package libvirt_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/libvirt"
	"github.com/cairn-backup/cairn/repo"
)

// linuxGuest is a domain that boots the tiny Linux of
// scripts/libvirt/guest-image.sh: the host's kernel, busybox and the real
// qemu-ga of Debian's qemu-guest-agent package. Its disk vda is a whole-
// disk ext4 (made here with mkfs.ext4 -d) that the guest mounts and keeps
// writing files into; its serial console goes to a file the test reads.
type linuxGuest struct {
	*testDomain
	serial string
	booted time.Duration // from start to the guest's "ready" line
}

const (
	guestDiskSize = 64 * MiB
	guestFileSize = 16384
	guestSeed     = "seed file written on the host before the first boot\n"
	guestBoot     = 4 * time.Minute // bound on boot + agent (TCG on a shared box)
)

// guestImage runs the project's script (cached after the first run) and
// returns its kernel, initrd and command line.
func guestImage(t *testing.T) map[string]string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CAIRN_REQUIRE_LIBVIRT") == "1" {
		fail = t.Fatalf
	}
	out, err := exec.Command("../../scripts/libvirt/guest-image.sh").Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		fail("scripts/libvirt/guest-image.sh: %s", msg)
	}
	img := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			img[k] = v
		}
	}
	for _, k := range []string{"kernel", "initrd", "cmdline"} {
		if img[k] == "" {
			t.Fatalf("guest-image.sh printed no %s:\n%s", k, out)
		}
	}
	return img
}

// newLinuxGuest defines (does not start) a guest with a fresh qcow2 disk;
// args are added to the kernel command line (cairn.nomount: the guest
// mounts and writes nothing).
func newLinuxGuest(t *testing.T, c *libvirt.Conn, args ...string) *linuxGuest {
	t.Helper()
	img := guestImage(t)
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed, "hello.txt"), []byte(guestSeed), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "ext4.raw")
	run(t, "truncate", "-s", fmt.Sprint(guestDiskSize), raw)
	run(t, "mkfs.ext4", "-q", "-F", "-L", "cairn", "-d", seed, raw)
	g := &linuxGuest{serial: filepath.Join(dir, "serial.log")}
	var b [4]byte
	rand.Read(b[:])
	d := &testDomain{t: t, c: c, name: "cairn-test-ga-" + hex.EncodeToString(b[:]), size: guestDiskSize,
		disk: filepath.Join(dir, "disk.qcow2")}
	run(t, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, d.disk)
	os.Remove(raw)
	x := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='%s'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>`, d.name, img["kernel"], img["initrd"], strings.Join(append([]string{img["cmdline"]}, args...), " "), d.disk, g.serial)
	dom, err := c.L.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("define %s: %v", d.name, err)
	}
	d.dom = dom
	t.Cleanup(func() { removeDomain(c, d.name) })
	g.testDomain = d
	return g
}

// boot starts the guest and waits until its agent answers guest-ping.
func (g *linuxGuest) boot() {
	g.t.Helper()
	start := time.Now()
	g.start()
	ready := false
	for deadline := start.Add(guestBoot); time.Now().Before(deadline); time.Sleep(time.Second) {
		log := g.console()
		if i := strings.Index(log, "cairn-guest: error"); i >= 0 {
			g.t.Fatalf("the guest failed: %s\nconsole:\n%s", firstLineOf(log[i:]), log)
		}
		if !ready && strings.Contains(log, "cairn-guest: ready") {
			ready, g.booted = true, time.Since(start)
		}
		if ready {
			if _, err := g.agent(`{"execute":"guest-ping"}`); err == nil {
				g.t.Logf("guest %s booted in %s, agent answered after %s", g.name, g.booted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
				return
			}
		}
	}
	g.t.Fatalf("the guest agent of %s did not answer within %s (ready line seen: %v)\nconsole:\n%s", g.name, guestBoot, ready, g.console())
}

// agent sends a command to qemu-ga through libvirt and returns the JSON
// value of "return".
func (g *linuxGuest) agent(cmd string) (json.RawMessage, error) {
	out, err := g.c.L.QEMUDomainAgentCommand(g.dom, cmd, 10, 0)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("agent command %s: no answer", cmd)
	}
	var reply struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(out[0]), &reply); err != nil {
		return nil, fmt.Errorf("agent command %s: %q: %w", cmd, out[0], err)
	}
	return reply.Return, nil
}

// fsfreezeStatus is qemu-ga's "thawed" or "frozen".
func (g *linuxGuest) fsfreezeStatus() string {
	g.t.Helper()
	ret, err := g.agent(`{"execute":"guest-fsfreeze-status"}`)
	if err != nil {
		g.t.Fatalf("guest-fsfreeze-status: %v", err)
	}
	var s string
	if err := json.Unmarshal(ret, &s); err != nil {
		g.t.Fatalf("guest-fsfreeze-status: %s: %v", ret, err)
	}
	return s
}

func (g *linuxGuest) console() string {
	b, _ := os.ReadFile(g.serial)
	return string(b)
}

var writerLine = regexp.MustCompile(`(?m)^cairn-writer (\d+)\r?$`)

// written is the number of the last file the guest's writer reported.
func (g *linuxGuest) written() int {
	m := writerLine.FindAllStringSubmatch(g.console(), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// waitWritten waits until the writer has reported file n.
func (g *linuxGuest) waitWritten(n int, within time.Duration) {
	g.t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if g.written() >= n {
			return
		}
	}
	g.t.Fatalf("the guest's writer did not reach file %d within %s (at %d); console tail:\n%s", n, within, g.written(), tail(g.console(), 20))
}

// guestFile is the content the writer puts into file n.
func guestFile(n int) string {
	line := fmt.Sprintf("cairn guest file %d\n", n)
	return strings.Repeat(line, guestFileSize/len(line)+1)[:guestFileSize]
}

// ext4State is what e2fsprogs say about the ext4 of a restored disk.
type ext4State struct {
	raw           string
	fsckOK        bool
	fsck          string
	needsRecovery bool
	features      string
}

// restoreExt4 restores vda of a restore point to a raw file and checks
// its ext4 read-only: `e2fsck -fn` and the superblock's feature flags.
func restoreExt4(t *testing.T, r *repo.Repository, id string) ext4State {
	t.Helper()
	p, err := r.LoadPoint(id)
	if err != nil {
		t.Fatal(err)
	}
	st := ext4State{raw: filepath.Join(t.TempDir(), "vda.raw")}
	if _, err := ingest.RestoreDisk(context.Background(), r, p, "vda", st.raw, ingest.RestoreOptions{Format: "raw"}); err != nil {
		t.Fatalf("restore vda of %s: %v", id, err)
	}
	out, err := exec.Command("e2fsck", "-f", "-n", st.raw).CombinedOutput()
	st.fsck, st.fsckOK = string(out), err == nil
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("e2fsck: %v", err)
		}
	}
	sb := run(t, "dumpe2fs", "-h", st.raw)
	sc := bufio.NewScanner(strings.NewReader(sb))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "Filesystem features" {
			st.features = strings.TrimSpace(v)
		}
	}
	if st.features == "" {
		t.Fatalf("dumpe2fs -h shows no features:\n%s", sb)
	}
	st.needsRecovery = strings.Contains(" "+st.features+" ", " needs_recovery ")
	return st
}

// checkFiles reads files of the restored ext4 with debugfs (no mount):
// the host's seed file and the writer's files from..to, byte for byte.
func (st ext4State) checkFiles(t *testing.T, from, to int) {
	t.Helper()
	if got := debugfsCat(t, st.raw, "/hello.txt"); got != guestSeed {
		t.Fatalf("/hello.txt in the restored disk: %q, want %q", got, guestSeed)
	}
	for n := from; n <= to; n++ {
		if got := debugfsCat(t, st.raw, fmt.Sprintf("/w/f%d", n)); got != guestFile(n) {
			t.Fatalf("/w/f%d in the restored disk: %d bytes %q..., want %d bytes of %q", n, len(got), head(got, 40), guestFileSize, head(guestFile(n), 40))
		}
	}
}

func debugfsCat(t *testing.T, raw, path string) string {
	t.Helper()
	cmd := exec.Command("debugfs", "-R", "cat "+path, raw)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v: %s", path, err, stderr.String())
	}
	if strings.Contains(stderr.String(), "File not found") {
		t.Fatalf("%s is not in the restored disk: %s", path, stderr.String())
	}
	return string(out)
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func firstLineOf(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
