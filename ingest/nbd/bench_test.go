package nbd

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSequentialRead reads a raw export of NBD_BENCH_SIZE bytes
// (default 1 GiB, full of data) from qemu-nbd over a unix socket, side by
// side in each iteration: through this client, through `qemu-img convert`
// from the same export to a null target (QEMU's own NBD client), and straight from
// the file. It reports each rate and client/qemu-img as a ratio (above 1:
// the client is faster), and the CPU time each client spends per GiB,
// which the load of a shared machine distorts less than the rates.
//
//	go test -run '^$' -bench SequentialRead -benchtime 3x ./ingest/nbd/
func BenchmarkSequentialRead(b *testing.B) {
	needTools(b, "qemu-img", "qemu-nbd")
	size := int64(1 << 30)
	if s := os.Getenv("NBD_BENCH_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	path := bigRawDisk(b, size)
	s := startQemuNBD(b, "unix", "-f", "raw", "--read-only", "--cache=writeback", path)
	uri := "nbd+unix:///disk?socket=" + s.addr
	buf := make([]byte, 32<<20)
	var tClient, tQemu, tFile, cpuClient, cpuQemu time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		t0, cpu0 := time.Now(), selfCPU()
		c, err := Dial(context.Background(), "unix", s.addr, "disk", nil)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := c.ReadAt(buf, off); err != nil && off+int64(len(buf)) < size {
				b.Fatal(err)
			}
		}
		c.Close()
		tClient += time.Since(t0)
		cpuClient += selfCPU() - cpu0

		t0 = time.Now()
		cmd := exec.Command("qemu-img", "convert", "-n", "-f", "raw",
			"--target-image-opts", uri, "driver=null-co,size="+strconv.FormatInt(size, 10))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		tQemu += time.Since(t0)
		cpuQemu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

		t0 = time.Now()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			f.ReadAt(buf, off)
		}
		f.Close()
		tFile += time.Since(t0)
	}
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(tClient), "client-MB/s")
	b.ReportMetric(mbps(tQemu), "qemu-img-MB/s")
	b.ReportMetric(mbps(tFile), "file-MB/s")
	b.ReportMetric(tQemu.Seconds()/tClient.Seconds(), "client/qemu-img")
	gib := float64(size) * float64(b.N) / (1 << 30)
	b.ReportMetric(cpuClient.Seconds()/gib, "client-cpu-s/GiB")
	b.ReportMetric(cpuQemu.Seconds()/gib, "qemu-img-cpu-s/GiB")
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
