package libvirt_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest/libvirt"
)

// startSSHD runs a private sshd on 127.0.0.1 (key login for root only)
// and returns a qemu+ssh URI that reaches this machine's libvirtd through it.
func startSSHD(t *testing.T) string {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("sshd not installed (scripts/libvirt-up.sh installs openssh-server): %v", err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host"))
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "client"))
	pub, _ := os.ReadFile(filepath.Join(dir, "client.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\n"+
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nAllowStreamLocalForwarding yes\n",
		port, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys"))
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatal("sshd did not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}
	hostPub, _ := os.ReadFile(filepath.Join(dir, "host.pub"))
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub)), 0o600)
	return fmt.Sprintf("qemu+ssh://root@127.0.0.1:%d/system?keyfile=%s&known_hosts=%s", port, filepath.Join(dir, "client"), kh)
}

// TestBackupOverSSH: qemu+ssh with a key and a checked host key; libvirt's
// socket, the backup job's NBD socket and qemu-nbd for a shut-off domain
// all go through the one SSH connection.
func TestBackupOverSSH(t *testing.T) {
	local := connect(t)
	uri := startSSHD(t)
	c, err := libvirt.Connect(uri)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	defer c.Close()
	r := newRepo(t)
	d := newDomain(t, local, "qcow2", 64*MiB)
	d.start()
	d.write(1*MiB, 2*MiB, 0x91)
	full := backup(t, c, r, d.name, libvirt.Options{})
	assertPoint(t, r, full.Summary.PointID, d.snapshotRef())
	d.write(40*MiB, 128*1024, 0x92)
	inc := backup(t, c, r, d.name, libvirt.Options{})
	if inc.Kind != "incremental" || inc.Summary.BytesRead != 128*1024 {
		t.Fatalf("incremental over ssh: %+v", inc)
	}
	assertPoint(t, r, inc.Summary.PointID, d.snapshotRef())
	d.shutdown()
	d.writeOffline(50*MiB, 64*1024, 0x93, "qcow2")
	off := backup(t, c, r, d.name, libvirt.Options{})
	if off.Method != libvirt.MethodOffline || off.Kind != "incremental" {
		t.Fatalf("offline over ssh: %+v", off)
	}
	assertPoint(t, r, off.Summary.PointID, d.snapshotRef())

	// A wrong host key is refused.
	bad := strings.Replace(uri, "known_hosts=", "known_hosts=/dev/null&x=", 1)
	if _, err := libvirt.Connect(bad); err == nil {
		t.Fatal("unknown host key accepted")
	}
}
