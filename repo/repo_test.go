package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

func TestInitOpenUnencrypted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, InitOptions{BlockSize: testBlockSize, PackSize: testPackSize})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	r.Close()
	for _, d := range repoDirs {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			t.Errorf("directory %s missing after init: %v", d, err)
		}
	}
	if keys, _ := filepath.Glob(filepath.Join(dir, "keys", "*")); len(keys) != 0 {
		t.Errorf("unencrypted repository has key files: %v", keys)
	}
	r, err = Open(dir, Credentials{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	c := r.Config()
	if c.Encrypted() || c.Encryption != encNone || c.Hash != "blake3" || c.BlockSize != testBlockSize ||
		c.PackSize != testPackSize || c.TableSize != DefaultTableSize || c.Version != FormatVersion || len(c.ID) != 32 {
		t.Errorf("unexpected config %+v", c)
	}
	if r.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", r.Dir(), dir)
	}
	// Credentials given to an unencrypted repository are ignored.
	r2, err := Open(dir, Credentials{Password: []byte("whatever")})
	if err != nil {
		t.Fatalf("Open unencrypted with a password: %v", err)
	}
	r2.Close()
}

func TestInitDefaults(t *testing.T) {
	r, err := Init(filepath.Join(t.TempDir(), "r"), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := r.Config()
	if c.BlockSize != DefaultBlockSize || c.PackSize != DefaultPackSize {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestInitRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]InitOptions{
		"block size not a power of two": {BlockSize: 5000},
		"block size too small":          {BlockSize: 2048},
		"pack size too small":           {PackSize: 1000},
		"encryption without secret":     {Encrypt: true},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "r")
			r, err := Init(dir, o)
			if err == nil {
				r.Close()
				t.Fatal("Init accepted bad options")
			}
			if _, err := os.Stat(filepath.Join(dir, "config")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("failed Init left a config behind: %v", err)
			}
		})
	}
}

func TestInitNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "somefile"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, InitOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("Init into non-empty dir: got %v, want ErrExists", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
		t.Fatal("Init wrote a config into a non-empty directory")
	}

	r := newTestRepo(t, false)
	_, err := Init(r.Dir(), InitOptions{})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "already a cairn repository") {
		t.Fatalf("Init over a repository: got %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "nope"), t.TempDir()} {
		if _, err := Open(dir, Credentials{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%s): got %v, want ErrNotFound", dir, err)
		}
	}
}

func rewriteConfig(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "config")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, _ = json.Marshal(m)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenFutureVersion(t *testing.T) {
	r := newTestRepo(t, false)
	rewriteConfig(t, r.Dir(), func(m map[string]any) { m["version"] = FormatVersion + 1 })
	_, err := Open(r.Dir(), Credentials{})
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("Open with a future format: got %v, want ErrFormat", err)
	}
	if !strings.Contains(err.Error(), "format 2") {
		t.Errorf("message does not name the version: %v", err)
	}
}

func TestOpenBadConfig(t *testing.T) {
	r := newTestRepo(t, false)
	rewriteConfig(t, r.Dir(), func(m map[string]any) { m["encryption"] = "rot13" })
	if _, err := Open(r.Dir(), Credentials{}); !errors.Is(err, ErrFormat) {
		t.Errorf("unknown encryption: got %v, want ErrFormat", err)
	}
	rewriteConfig(t, r.Dir(), func(m map[string]any) { m["encryption"] = "none"; m["block_size"] = 1000 })
	if _, err := Open(r.Dir(), Credentials{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad block size: got %v, want ErrCorrupt", err)
	}
	if err := os.WriteFile(filepath.Join(r.Dir(), "config"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(r.Dir(), Credentials{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage config: got %v, want ErrCorrupt", err)
	}
}

func TestOpenRefusesKeysWithoutEncryption(t *testing.T) {
	// An attacker (or a botched edit) turning encryption off in the
	// plaintext config must not make cairn read the repository as plain.
	r := newTestRepo(t, true)
	rewriteConfig(t, r.Dir(), func(m map[string]any) { m["encryption"] = "none"; m["hash"] = "blake3" })
	_, err := Open(r.Dir(), Credentials{})
	if err == nil || !strings.Contains(err.Error(), "key files") {
		t.Fatalf("Open of unencrypted config with key files: got %v, want refusal", err)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("want ErrCorrupt, got %v", err)
	}
	if _, err := Open(r.Dir(), testKey); err == nil {
		t.Error("Open with the right key still accepted the downgraded config")
	}
}

// Each password derivation costs an argon2id run (~1 s here), so this test
// keeps their number small: Init (2), wrong password (1), AddKey (1), Open (1).
func TestEncryptedPassword(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	pw := Credentials{Password: []byte("correct horse battery staple")}
	r, err := Init(dir, InitOptions{Encrypt: true, Credentials: pw, BlockSize: testBlockSize, PackSize: testPackSize})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	c := r.Config()
	if !c.Encrypted() || c.Encryption != encAESGCM || c.Hash != "blake3-keyed" {
		t.Errorf("config of an encrypted repo: %+v", c)
	}
	img := imageFromSeeds([]uint64{1, 2, 0, 3}, 100)
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: img})
	assertDisk(t, r, p.ID, "sda", img) // Init opened it with the password
	r.Close()

	for name, c := range map[string]Credentials{
		"wrong password":          {Password: []byte("correct horse battery stapler")},
		"no credentials":          {},
		"key file for a password": {KeyFile: pw.Password},
	} {
		if _, err := Open(dir, c); !errors.Is(err, ErrWrongPassword) {
			t.Errorf("%s: got %v, want ErrWrongPassword", name, err)
		}
	}
}

// TestAddKeyPassword adds a password to a key-file repository and opens it
// with the password.
func TestAddKeyPassword(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds([]uint64{5, 0, 6}, 10)
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: img})
	pw := Credentials{Password: []byte("second password")}
	if err := r.AddKey(Credentials{KeyFile: []byte("wrong key")}, pw); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("AddKey with wrong existing credentials: got %v, want ErrWrongPassword", err)
	}
	if keys, _ := filepath.Glob(filepath.Join(r.Dir(), "keys", "*.json")); len(keys) != 1 {
		t.Fatalf("failed AddKey wrote a key file: %v", keys)
	}
	if err := r.AddKey(testKey, pw); err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	if keys, _ := filepath.Glob(filepath.Join(r.Dir(), "keys", "*.json")); len(keys) != 2 {
		t.Fatalf("want 2 key files after AddKey, got %d", len(keys))
	}
	r2, err := Open(r.Dir(), pw)
	if err != nil {
		t.Fatalf("Open with the added password: %v", err)
	}
	defer r2.Close()
	assertDisk(t, r2, p.ID, "sda", img)
	// The original key still works, and both see the same hash key.
	r3 := reopen(t, r)
	if r2.Hasher().Sum(img) != r3.Hasher().Sum(img) {
		t.Fatal("the two keys unlock different hash keys")
	}
}

func TestEncryptedKeyFile(t *testing.T) {
	r := newTestRepo(t, true)
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: imageFromSeeds([]uint64{7, 8}, 0)})
	r.Close()

	if _, err := Open(r.Dir(), Credentials{KeyFile: []byte("another key file")}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong key file: got %v, want ErrWrongPassword", err)
	}
	if _, err := Open(r.Dir(), Credentials{Password: testKey.KeyFile}); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("key file bytes given as password: got %v, want ErrWrongPassword", err)
	}
	// A damaged key file next to the good one does not lock the user out.
	if err := os.WriteFile(filepath.Join(r.Dir(), "keys", "0000000000000000.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, r)
	assertDisk(t, r2, p.ID, "sda", imageFromSeeds([]uint64{7, 8}, 0))

	// Key files added with a key file work too.
	other := Credentials{KeyFile: []byte("second key file")}
	if err := r2.AddKey(testKey, other); err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	r3, err := Open(r.Dir(), other)
	if err != nil {
		t.Fatalf("Open with added key file: %v", err)
	}
	defer r3.Close()
	assertDisk(t, r3, p.ID, "sda", imageFromSeeds([]uint64{7, 8}, 0))

	// Without any key file the repository cannot be opened.
	if err := os.RemoveAll(filepath.Join(r.Dir(), "keys")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(r.Dir(), "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(r.Dir(), testKey); err == nil {
		t.Error("Open without key files succeeded")
	}
}

func TestKeyFromOtherRepositoryRejected(t *testing.T) {
	// A key file copied from another repository (same secret) must not
	// unlock this one: the repository ID is bound into the key.
	a := newTestRepo(t, true)
	b := newTestRepo(t, true)
	akeys, _ := filepath.Glob(filepath.Join(a.Dir(), "keys", "*.json"))
	bkeys, _ := filepath.Glob(filepath.Join(b.Dir(), "keys", "*.json"))
	if len(akeys) != 1 || len(bkeys) != 1 {
		t.Fatalf("key files: %v %v", akeys, bkeys)
	}
	raw, err := os.ReadFile(akeys[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bkeys[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(b.Dir(), testKey); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("foreign key file: got %v, want ErrWrongPassword", err)
	}
}

func TestAddKeyUnencrypted(t *testing.T) {
	r := newTestRepo(t, false)
	if err := r.AddKey(Credentials{}, testKey); err == nil {
		t.Fatal("AddKey on an unencrypted repository succeeded")
	}
	if keys, _ := filepath.Glob(filepath.Join(r.Dir(), "keys", "*")); len(keys) != 0 {
		t.Fatalf("AddKey left key files: %v", keys)
	}
}

// grepTree reports the files under dir that contain marker.
func grepTree(t *testing.T, dir string, marker []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, marker) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestEncryptionAtRest(t *testing.T) {
	marker := []byte("CAIRN-PLAINTEXT-MARKER-5d41402abc4b2a76")
	// Block: the marker followed by random bytes, so it is stored raw
	// (not compressed) and an unencrypted pack holds it verbatim.
	blk := blockData(42, testBlockSize)
	copy(blk[100:], marker)
	img := append(append([]byte{}, blk...), blockData(43, testBlockSize)...)
	secretVM := "vm-" + string(marker)

	for _, enc := range []bool{false, true} {
		r := newTestRepo(t, enc)
		p := commitPoint(t, r, secretVM, diskImage{name: "disk-" + string(marker), img: img})
		hits := grepTree(t, r.Dir(), marker)
		if !enc {
			// Control: the search works, and finds the block and the manifest.
			if len(hits) < 2 {
				t.Fatalf("unencrypted: marker found only in %v; the test cannot see stored bytes", hits)
			}
		} else if len(hits) != 0 {
			t.Fatalf("encrypted repository stores the plaintext marker in %v", hits)
		}

		e := blockEntry(t, r, p, "disk-"+string(marker), 0)
		unkeyed := ID(blake3.Sum256(blk))
		if enc && e.ID == unkeyed {
			t.Error("encrypted repository names blocks by their unkeyed BLAKE3 hash")
		}
		if !enc && e.ID != unkeyed {
			t.Errorf("unencrypted repository: block ID %s, want BLAKE3 %s", e.ID.Short(), unkeyed.Short())
		}
		if e.ID != r.Hasher().Sum(blk) {
			t.Error("block ID is not the repository hash of its content")
		}
		assertDisk(t, r, p.ID, "disk-"+string(marker), img)
	}
}

func TestKeyedHashDiffersPerRepository(t *testing.T) {
	a, b := newTestRepo(t, true), newTestRepo(t, true)
	data := []byte("same content")
	if a.Hasher().Sum(data) == b.Hasher().Sum(data) {
		t.Fatal("two encrypted repositories hash identical data to identical IDs")
	}
	if a.Hasher().Sum(data) != reopen(t, a).Hasher().Sum(data) {
		t.Fatal("hash key is not stable across opens")
	}
}

func TestIDText(t *testing.T) {
	id := NewHasher(nil).Sum([]byte("x"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(String()) = %v, %v", got, err)
	}
	if len(id.Short()) != 8 || !strings.HasPrefix(id.String(), id.Short()) {
		t.Errorf("Short() = %q", id.Short())
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 64), strings.Repeat("0", 63)} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
	raw, err := json.Marshal(struct{ ID ID }{id})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ ID ID }
	if err := json.Unmarshal(raw, &back); err != nil || back.ID != id {
		t.Fatalf("JSON round trip: %v %v", back.ID, err)
	}
	if !ZeroID.IsZero() || id.IsZero() {
		t.Error("IsZero")
	}
	var pid PackID
	pid[0], pid[15] = 0xab, 0xcd
	pback, err := ParsePackID(pid.String())
	if err != nil || pback != pid {
		t.Fatalf("ParsePackID: %v %v", pback, err)
	}
	if _, err := ParsePackID("xyz"); err == nil {
		t.Error("ParsePackID accepted garbage")
	}
}
