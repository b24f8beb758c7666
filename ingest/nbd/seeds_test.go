package nbd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGenerateFuzzSeeds records qemu-nbd's side of a handshake and of the
// replies to fuzzRequests into the seed corpus. It only runs when
// NBD_GEN_SEEDS=1:
//
//	NBD_GEN_SEEDS=1 go test -run TestGenerateFuzzSeeds ./ingest/nbd/
func TestGenerateFuzzSeeds(t *testing.T) {
	if os.Getenv("NBD_GEN_SEEDS") != "1" {
		t.Skip("set NBD_GEN_SEEDS=1 to regenerate testdata/fuzz from qemu-nbd")
	}
	needTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	img := filepath.Join(dir, "seed.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", img, "4M")
	qemuIO(t, img, "write -P 0x5a 4096 4096", "write -P 0x33 131072 65536")
	sh(t, "qemu-img", "bitmap", "--add", "--granularity", "4096", img, "bm0")
	qemuIO(t, img, "write -P 0x77 66048 512")
	s := startQemuNBD(t, "unix", "-f", "qcow2", "--read-only", "--allocation-depth", "--bitmap=bm0", img)

	// The handshake FuzzHandshake replays.
	conn, rec := recordDial(t, s)
	n := &negotiation{rw: struct {
		io.Reader
		io.Writer
	}{io.TeeReader(conn, rec), conn}}
	if err := n.greet(); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.structuredReplies(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := n.metaContexts(optSetMetaContext, "disk", []string{ContextAllocation}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.info(optGo, "disk"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	writeSeed(t, "FuzzHandshake", "qemu-nbd", rec.Bytes())

	// The replies FuzzStructuredReply replays.
	conn, rec = recordDial(t, s)
	n = &negotiation{rw: conn}
	if err := n.greet(); err != nil {
		t.Fatal(err)
	}
	if ok, err := n.structuredReplies(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ctxs, err := n.metaContexts(optSetMetaContext, "disk", []string{ContextAllocation, ContextAllocationDepth, DirtyBitmapContext("bm0")})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ctxs {
		if fuzzContexts[m.id] != m.name {
			t.Fatalf("qemu-nbd gave %q the id %d; update fuzzContexts", m.name, m.id)
		}
	}
	if _, err := n.info(optGo, "disk"); err != nil {
		t.Fatal(err)
	}
	for _, r := range fuzzRequests(false) {
		var b [28]byte
		r.encode(&b)
		if _, err := conn.Write(b[:]); err != nil {
			t.Fatal(err)
		}
	}
	done, err := runRepliesFrom(bufio.NewReader(io.TeeReader(conn, rec)))
	if err != nil || len(done) != 4 {
		t.Fatalf("recording qemu-nbd's replies: %d done, %v", len(done), err)
	}
	conn.Close()
	writeSeed(t, "FuzzStructuredReply", "qemu-nbd", rec.Bytes())
}

func recordDial(t *testing.T, s *server) (net.Conn, *bytes.Buffer) {
	t.Helper()
	conn, err := net.DialTimeout(s.network, s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, &bytes.Buffer{}
}

func writeSeed(t *testing.T, target, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s/%s: %d bytes", dir, name, len(data))
}
