package bench

import (
	"io/fs"
	"path/filepath"
)

// dirBytes returns the total size of the regular files under dir (their
// apparent size, as `du --apparent-size` counts it).
func dirBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	return total, err
}
