package lkbrowser

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxFile bounds one file taken from the tarball; the bundle is 0.6 MB.
const maxFile = 32 << 20

// unpack writes the files listed in files from the gzipped tarball tgz
// into dir, which it creates. Every listed file must be there.
func unpack(tgz []byte, dir string) error {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return fmt.Errorf("lkbrowser: unpack: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lkbrowser: unpack: %w", err)
	}
	tr := tar.NewReader(zr)
	found := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("lkbrowser: unpack: %w", err)
		}
		name, ok := files[strings.TrimPrefix(h.Name, "./")]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > maxFile {
			return fmt.Errorf("lkbrowser: unpack: %s is %d bytes", h.Name, h.Size)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxFile))
		if err != nil {
			return fmt.Errorf("lkbrowser: unpack %s: %w", h.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("lkbrowser: unpack: %w", err)
		}
		found++
	}
	if found != len(files) || !complete(dir) {
		return fmt.Errorf("lkbrowser: unpack: the tarball lacks some of %d files (found %d)", len(files), found)
	}
	return nil
}
