package openstack

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/source"
)

// transfer reads every snapshot into one restore point: each volume
// snapshot becomes a raw Glance image (prepared in the background, in
// disk order, at most Limits.Transfers at once) whose download streams
// into ingest.Backup.
func (sj *serverJob) transfer(ctx context.Context) error {
	b, s := sj.b, sj.s
	for _, d := range sj.disks {
		if d.rootImage.ID != "" {
			if err := sj.prepareRoot(ctx, d); err != nil {
				return fmt.Errorf("root disk: %w", err)
			}
		}
	}
	uniqueNames(sj.disks)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prep := new(errgroup.Group)
	defer prep.Wait() // before the deferred cleanup deletes what they use
	prep.Go(func() error {
		for _, d := range sj.disks {
			if d.ready == nil {
				continue
			}
			if err := b.xfer.Acquire(ctx, 1); err != nil {
				d.fail(err)
				continue
			}
			var once sync.Once
			d.releaseXfr = func() { once.Do(func() { b.xfer.Release(1) }) }
			prep.Go(func() error {
				err := sj.prepare(ctx, d)
				if err != nil {
					d.releaseXfr()
				}
				d.fail(err)
				return nil
			})
		}
		return nil
	})
	o := ingest.BackupOptions{VM: s.Name, Source: "openstack", Consistency: sj.res.Consistency,
		Workers: b.o.Workers, Tags: map[string]string{"openstack_server_id": s.ID, "openstack_project_id": s.ProjectID}}
	for k, v := range b.o.Tags {
		o.Tags[k] = v
	}
	if o.VM == "" {
		o.VM = s.ID
	}
	if b.o.Progress != nil {
		o.Progress = b.o.Progress(s)
	}
	for _, d := range sj.disks {
		dd := DiskDef{Name: d.name, VolumeID: volID(d), SnapshotID: d.snapshot.ID, Device: devOf(d), BootIndex: d.bootIndex, Size: d.size}
		if d.vol == nil { // only the image-backed root disk comes from the image
			dd.ImageID = s.ImageID
		}
		sj.def.Disks = append(sj.def.Disks, dd)
		o.Disks = append(o.Disks, ingest.DiskSpec{Name: d.name, Path: d.origin(), Open: sj.opener(ctx, d)})
	}
	o.Definition = mustJSON(sj.def)
	start := time.Now()
	p, sum, err := ingest.Backup(ctx, b.r, o)
	sj.time("ingest", time.Since(start))
	if err != nil {
		cancel()
		prep.Wait()
		for _, d := range sj.disks { // the preparation's error explains a failed download best
			if d.err != nil && d.err != context.Canceled {
				return fmt.Errorf("disk %s: %w", d.name, d.err)
			}
		}
		return err
	}
	sj.res.PointID, sj.res.Summary = p.ID, &sum
	return nil
}

func volID(d *diskJob) string {
	if d.vol != nil {
		return d.vol.ID
	}
	return ""
}

func devOf(d *diskJob) string {
	if d.vol != nil {
		return d.vol.Device
	}
	return ""
}

func (d *diskJob) origin() string {
	if d.vol != nil {
		return "openstack:volume/" + d.vol.ID + "@snapshot/" + d.snapshot.ID
	}
	return "openstack:image/" + d.rootImage.ID
}

// fail ends the preparation of d with err (nil: success).
func (d *diskJob) fail(err error) {
	d.err = err
	close(d.ready)
}

func uniqueNames(ds []*diskJob) {
	seen := map[string]bool{}
	for i, d := range ds {
		if seen[d.name] {
			d.name = fmt.Sprintf("%s-%d", d.name, i)
		}
		seen[d.name] = true
		if d.img == nil && d.ready == nil {
			d.ready = make(chan struct{})
		}
	}
}

// prepare turns a volume snapshot into a raw Glance image: a temporary
// volume from the snapshot, uploaded to a temporary image. The volume and
// the snapshot are deleted as soon as the image is complete.
func (sj *serverJob) prepare(ctx context.Context, d *diskJob) error {
	b, s := sj.b, sj.s
	start := time.Now()
	vt := Temp{Kind: KindVolume, Name: b.tm.j.TempName(s.ID, "vol-"+d.name), Server: s.ID, Project: s.ProjectID}
	vt, err := b.tm.create(ctx, vt, func(ctx context.Context) (string, error) {
		return b.cl.createVolume(ctx, vt.Name, d.vol.Size, d.snapshot.ID, "", "", b.tm.j.Metadata(s.ID))
	})
	if err != nil {
		return fmt.Errorf("temporary volume from snapshot %s: %s%s", d.snapshot.ID, apiMessage(err), quotaHint(err))
	}
	if err := b.cl.waitVolume(ctx, vt.ID, b.o.Timeouts.Volume); err != nil {
		return fmt.Errorf("temporary volume from snapshot %s: %w%s", d.snapshot.ID, err, b.cl.cinderMessages(ctx, vt.ID))
	}
	sj.time("clone", time.Since(start))
	b.event(s, "transfer", fmt.Sprintf("%s: volume %s from snapshot ready after %s", d.name, vt.ID, time.Since(start).Round(time.Millisecond)))
	if b.o.Transfer == "attach" {
		err := sj.prepareAttach(ctx, d, vt)
		d.releaseXfr() // the bytes are read locally, not through the cloud
		return err
	}
	im, err := sj.upload(ctx, d.name, vt)
	if err != nil {
		return err
	}
	if im.Size == nil || *im.Size != d.size {
		return fmt.Errorf("image %s of volume %s holds %v bytes, want %d", im.ID, d.vol.ID, im.Size, d.size)
	}
	d.img = im
	if err := b.tm.release(ctx, vt); err != nil {
		return err
	}
	if err := b.tm.release(ctx, d.snapshot); err != nil {
		return err
	}
	sj.release(1)
	return nil
}

// upload copies a temporary volume into a temporary raw image.
func (sj *serverJob) upload(ctx context.Context, disk string, vt Temp) (*imageInfo, error) {
	b, s := sj.b, sj.s
	start := time.Now()
	it := Temp{Kind: KindImage, Name: b.tm.j.TempName(s.ID, "img-"+disk), Server: s.ID, Project: s.ProjectID}
	it, err := b.tm.create(ctx, it, func(ctx context.Context) (string, error) {
		return b.cl.uploadToImage(ctx, vt.ID, it.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("upload of volume %s to an image: %s", vt.ID, apiMessage(err))
	}
	b.cl.markImage(ctx, it.ID, b.tm.j.Metadata(s.ID)) // best effort: the name marks it too
	im, err := b.cl.waitImage(ctx, it.ID, b.o.Timeouts.Upload)
	if err != nil {
		return nil, fmt.Errorf("upload of volume %s to image %s: %w%s", vt.ID, it.ID, err, b.cl.cinderMessages(ctx, vt.ID))
	}
	if err := b.cl.waitVolume(ctx, vt.ID, b.o.Timeouts.Volume); err != nil {
		return nil, fmt.Errorf("volume %s after upload: %w", vt.ID, err)
	}
	sj.time("upload", time.Since(start))
	b.event(s, "transfer", fmt.Sprintf("%s: image %s uploaded after %s", disk, im.ID, time.Since(start).Round(time.Millisecond)))
	return im, nil
}

// prepareRoot makes the Nova image snapshot of an image-backed root disk
// readable as raw bytes: a raw image is used as it is; any other format
// goes through a temporary volume (Cinder converts it) and a raw upload.
func (sj *serverJob) prepareRoot(ctx context.Context, d *diskJob) error {
	b, s := sj.b, sj.s
	im, err := b.cl.getImage(ctx, d.rootImage.ID)
	if err != nil {
		return fmt.Errorf("image %s: %s", d.rootImage.ID, apiMessage(err))
	}
	if im.DiskFormat == "raw" {
		d.img, d.size = im, *im.Size
		return nil
	}
	gib := int((max(*im.Size, ptrOr(im.VirtualSize, 0)) + 1<<30 - 1) >> 30)
	gib = max(gib, im.MinDisk, sj.def.Flavor.Disk, 1)
	start := time.Now()
	vt := Temp{Kind: KindVolume, Name: b.tm.j.TempName(s.ID, "vol-root"), Server: s.ID, Project: s.ProjectID}
	vt, err = b.tm.create(ctx, vt, func(ctx context.Context) (string, error) {
		return b.cl.createVolume(ctx, vt.Name, gib, "", im.ID, "", b.tm.j.Metadata(s.ID))
	})
	if err != nil {
		return fmt.Errorf("temporary volume from %s image %s: %s", im.DiskFormat, im.ID, apiMessage(err))
	}
	if err := b.cl.waitVolume(ctx, vt.ID, b.o.Timeouts.Volume); err != nil {
		return fmt.Errorf("temporary volume from image %s: %w%s", im.ID, err, b.cl.cinderMessages(ctx, vt.ID))
	}
	sj.time("clone", time.Since(start))
	raw, err := sj.upload(ctx, d.name, vt)
	if err != nil {
		return err
	}
	d.img, d.size = raw, int64(gib)<<30
	if raw.Size == nil || *raw.Size != d.size {
		return fmt.Errorf("raw image %s holds %v bytes, want %d", raw.ID, raw.Size, d.size)
	}
	if err := b.tm.release(ctx, vt); err != nil {
		return err
	}
	if err := b.tm.release(ctx, d.rootImage); err != nil {
		return err
	}
	sj.release(1)
	return nil
}

func ptrOr(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// opener returns the lazy source of a disk: it waits for the disk's
// image, then streams its download, verifying Glance's checksum.
func (sj *serverJob) opener(ctx context.Context, d *diskJob) func() (source.Source, error) {
	return func() (source.Source, error) {
		open := func() (io.ReadCloser, error) {
			if d.ready != nil {
				start := time.Now()
				select {
				case <-d.ready:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				sj.time("ingest_wait", time.Since(start))
				if d.err != nil {
					return nil, d.err
				}
			}
			return sj.download(ctx, d)
		}
		if sj.b.o.Transfer == "attach" && d.vol != nil {
			return &lazySource{size: d.size, open: func() (source.Source, error) {
				select {
				case <-d.ready:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if d.err != nil {
					return nil, d.err
				}
				return d.local(ctx)
			}}, nil
		}
		return source.NewStream(d.size, sj.b.window, open), nil
	}
}

func (sj *serverJob) download(ctx context.Context, d *diskJob) (io.ReadCloser, error) {
	res := imagedata.Download(ctx, sj.b.cl.Image, d.img.ID)
	if res.Err != nil {
		if d.releaseXfr != nil {
			d.releaseXfr()
		}
		return nil, fmt.Errorf("download of image %s: %s", d.img.ID, apiMessage(res.Err))
	}
	sj.b.event(sj.s, "transfer", fmt.Sprintf("%s: streaming image %s into the repository", d.name, d.img.ID))
	v := &verifier{body: res.Body, what: "image " + d.img.ID, size: d.size, done: d.releaseXfr}
	switch {
	case d.img.HashAlgo != "" && d.img.HashValue != "":
		v.h, v.want, v.algo = newHash(d.img.HashAlgo), d.img.HashValue, d.img.HashAlgo
	case d.img.Checksum != "":
		v.h, v.want, v.algo = md5.New(), d.img.Checksum, "md5"
	}
	return v, nil
}

func newHash(algo string) hash.Hash {
	switch algo {
	case "sha512":
		return sha512.New()
	case "sha256":
		return sha256.New()
	case "md5":
		return md5.New()
	}
	return nil
}

// verifier hashes a download and turns a checksum mismatch into an error
// in place of io.EOF, so the last bytes are never stored as good.
type verifier struct {
	body       io.ReadCloser
	what       string
	h          hash.Hash
	want, algo string
	size, n    int64
	done       func()
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.body.Read(p)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	v.n += int64(n)
	if err == io.EOF {
		if v.done != nil {
			v.done()
		}
		if v.h != nil {
			if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
				return n, fmt.Errorf("%s: %s of the %d bytes downloaded is %s, Glance recorded %s: the data was damaged in transit or at rest", v.what, v.algo, v.n, got, v.want)
			}
		}
	}
	return n, err
}

func (v *verifier) Close() error {
	if v.done != nil {
		v.done()
	}
	return v.body.Close()
}
