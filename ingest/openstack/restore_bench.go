package openstack

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/cairn-backup/cairn/repo"
)

// StreamDiskForBench streams a disk exactly as a restore uploads it, into
// w: the reference run of cairn's own work for the restore figure.
func StreamDiskForBench(ctx context.Context, dr *repo.DiskReader, w io.Writer) error {
	s := newRestoreStream(ctx, dr, 0, nil)
	defer s.Close()
	_, err := io.Copy(w, s)
	return err
}

// UploadFileForBench uploads a local raw file to a new private image with
// the client a restore uses: the reference run of the cloud's upload for
// the restore figure. The caller deletes the image.
func UploadFileForBench(ctx context.Context, cl *Cloud, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	priv := images.ImageVisibilityPrivate
	img, err := images.Create(ctx, cl.Image, images.CreateOpts{Name: restoreTempPrefix + "bench", ContainerFormat: "bare", DiskFormat: "raw", Visibility: &priv}).Extract()
	if err != nil {
		return "", fmt.Errorf("create image: %w", apiErr(err))
	}
	if err := imagedata.Upload(ctx, cl.Image, img.ID, struct{ io.Reader }{f}).ExtractErr(); err != nil {
		return img.ID, fmt.Errorf("upload: %w", apiErr(err))
	}
	return img.ID, nil
}
