package openstack

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/cairn-backup/cairn/ingest/source"
)

// With --transfer attach, cairn attaches the temporary volume to the host
// it runs on through the Cinder attachments API (a host attachment with a
// connector, no server) and reads the bytes from what the connection info
// names:
//
//   - nfs: the volume file under mount_point_base/<md5(export)>/<name>,
//     when that share is mounted on this host (a raw file: holes are
//     skipped with SEEK_DATA);
//   - rbd: `rbd export` of pool/image against the monitors in the
//     connection info (librbd in user space, no kernel module);
//   - anything else (iscsi, fibre_channel, local block devices) needs
//     os-brick and a kernel initiator; cairn reports it and the user can
//     use --transfer glance.

// attachment is a Cinder attachment with its connection info.
type attachment struct {
	ID             string         `json:"id"`
	Status         string         `json:"status"`
	ConnectionInfo map[string]any `json:"connection_info"`
}

func hostConnector() map[string]any {
	host, _ := os.Hostname()
	return map[string]any{"platform": runtime.GOARCH, "os_type": runtime.GOOS, "ip": "127.0.0.1", "host": host,
		"multipath": false, "initiator": "iqn.2026-01.org.cairn-backup:" + host, "do_local_attach": false}
}

// createAttachment attaches a volume to this host and
// completes the attachment.
func (cl *Cloud) createAttachment(ctx context.Context, volumeID string) (*attachment, error) {
	req := map[string]any{"attachment": map[string]any{"volume_uuid": volumeID, "connector": hostConnector()}}
	var b struct {
		Attachment attachment `json:"attachment"`
	}
	if err := postJSON(ctx, cl.Volume, "attachments", req, &b); err != nil {
		return nil, err
	}
	return &b.Attachment, nil
}

func (cl *Cloud) completeAttachment(ctx context.Context, id string) error {
	return postJSON(ctx, cl.Volume, "attachments/"+id+"/action", map[string]any{"os-complete": nil}, nil, 200, 202, 204)
}

// prepareAttach attaches the temporary volume, to the Nova server cairn
// runs on (backup_nova_attach.go) or to this host through Cinder, and
// sets the disk's reader.
func (sj *serverJob) prepareAttach(ctx context.Context, d *diskJob, vt Temp) error {
	b, s := sj.b, sj.s
	if b.host != nil {
		return sj.prepareNovaAttach(ctx, d, vt)
	}
	var att *attachment
	at := Temp{Kind: KindAttachment, Name: b.tm.j.TempName(s.ID, "att-"+d.name), Server: s.ID, Project: s.ProjectID}
	at, err := b.tm.create(ctx, at, func(ctx context.Context) (string, error) {
		var err error
		att, err = b.cl.createAttachment(ctx, vt.ID)
		if err != nil {
			return "", err
		}
		return att.ID, nil
	})
	if err != nil {
		return fmt.Errorf("attach volume %s to this host: %s", vt.ID, apiMessage(err))
	}
	if err := b.cl.completeAttachment(ctx, at.ID); err != nil {
		return fmt.Errorf("complete attachment %s: %s", at.ID, apiMessage(err))
	}
	r, err := connectionReader(att.ConnectionInfo, d.size)
	if err != nil {
		return fmt.Errorf("volume %s: %w", vt.ID, err)
	}
	d.local = r
	return nil
}

// connectionReader returns how to open the bytes behind connection info.
func connectionReader(ci map[string]any, size int64) (func(context.Context) (source.Source, error), error) {
	typ, _ := ci["driver_volume_type"].(string)
	// The attachments API returns connection_info flat; the legacy
	// os-initialize_connection nests it under "data".
	data, ok := ci["data"].(map[string]any)
	if !ok {
		data = ci
	}
	str := func(k string) string { s, _ := data[k].(string); return s }
	switch typ {
	case "nfs":
		export, name, base := str("export"), str("name"), str("mount_point_base")
		if base == "" {
			base = "/var/lib/nova/mnt"
		}
		sum := md5.Sum([]byte(export))
		p := filepath.Join(base, hex.EncodeToString(sum[:]), name)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("nfs share %s is not mounted on this host (no %s): mount it there or use --transfer glance", export, p)
		}
		return func(context.Context) (source.Source, error) {
			src, err := source.Open(p)
			if err == nil && src.Size() != size {
				src.Close()
				return nil, fmt.Errorf("volume file %s holds %d bytes, want %d", p, src.Size(), size)
			}
			return src, err
		}, nil
	case "rbd":
		if _, err := exec.LookPath("rbd"); err != nil {
			return nil, fmt.Errorf("rbd connection needs the rbd command (package ceph-common) on this host, or use --transfer glance")
		}
		name := str("name")
		var mons []string
		hosts, _ := data["hosts"].([]any)
		ports, _ := data["ports"].([]any)
		for i, h := range hosts {
			p := "6789"
			if i < len(ports) {
				p = fmt.Sprint(ports[i])
			}
			mons = append(mons, fmt.Sprintf("%v:%s", h, p))
		}
		args := []string{"--mon-host", strings.Join(mons, ","), "--no-progress"}
		if auth, _ := data["auth_enabled"].(bool); auth {
			args = append(args, "--id", str("auth_username"))
		} else {
			args = append(args, "--auth-supported", "none")
		}
		args = append(args, "export", name, "-")
		return func(ctx context.Context) (source.Source, error) {
			return source.NewStream(size, 64<<20, func() (io.ReadCloser, error) { return startExport(ctx, args) }), nil
		}, nil
	}
	return nil, fmt.Errorf("connection type %q cannot be read by cairn on this host (it needs os-brick and a kernel initiator): use --transfer glance", typ)
}

// exportReader is the stdout of `rbd export`; Close kills the process.
type exportReader struct {
	io.ReadCloser
	cmd  *exec.Cmd
	once sync.Once
	werr error
	errb *strings.Builder
}

func startExport(ctx context.Context, args []string) (io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, "rbd", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var eb strings.Builder
	cmd.Stderr = &eb
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("rbd export: %w", err)
	}
	return &exportReader{ReadCloser: out, cmd: cmd, errb: &eb}, nil
}

func (e *exportReader) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if err == io.EOF {
		e.once.Do(func() { e.werr = e.cmd.Wait() })
		if e.werr != nil {
			return n, fmt.Errorf("rbd %s: %v: %s", strings.Join(e.cmd.Args[1:], " "), e.werr, lastLine(e.errb.String()))
		}
	}
	return n, err
}

func (e *exportReader) Close() error {
	e.once.Do(func() {
		e.cmd.Process.Kill()
		e.werr = e.cmd.Wait()
	})
	return nil
}

// lazySource opens its source on first use, after waiting for the disk's
// preparation, so that a backup can list all disks before any is ready.
type lazySource struct {
	size int64
	open func() (source.Source, error)
	once sync.Once
	src  source.Source
	err  error
}

func (l *lazySource) get() (source.Source, error) {
	l.once.Do(func() { l.src, l.err = l.open() })
	return l.src, l.err
}

func (l *lazySource) ReadAt(p []byte, off int64) (int, error) {
	s, err := l.get()
	if err != nil {
		return 0, err
	}
	return s.ReadAt(p, off)
}

func (l *lazySource) Extents(fn func(off, length int64) error) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Extents(fn)
}

func (l *lazySource) Size() int64    { return l.size }
func (l *lazySource) Format() string { return "raw (attached)" }
func (l *lazySource) Close() error {
	l.once.Do(func() { l.err = fmt.Errorf("closed") })
	if l.src != nil {
		return l.src.Close()
	}
	return nil
}

// lastLine is the last non-empty line of a tool's stderr (its error).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
