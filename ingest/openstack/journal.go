package openstack

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// TempPrefix starts the name of every temporary resource cairn creates.
const TempPrefix = "cairn-tmp-"

// Metadata keys cairn puts on its temporary resources.
const (
	MetaTemporary = "cairn_temporary" // "true"
	MetaRun       = "cairn_run"       // run id
	MetaServer    = "cairn_server"    // server id the temporary serves
)

// Kinds of temporary resources, in the order they must be deleted.
const (
	KindImage      = "image"
	KindAttachment = "attachment"
	// KindServerAttachment is a Nova attachment of a temporary volume to
	// the server cairn runs on; its id is "<server>/<volume>".
	KindServerAttachment = "server_attachment"
	KindVolume           = "volume"
	KindSnapshot         = "snapshot"
)

var kindOrder = map[string]int{KindImage: 0, KindAttachment: 1, KindServerAttachment: 1, KindVolume: 2, KindSnapshot: 3}

// Temp is one temporary resource. Name is unique per run, so a resource
// whose creation response was lost can still be found by name.
type Temp struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	ID      string `json:"id,omitempty"`
	Server  string `json:"server,omitempty"`
	Project string `json:"project,omitempty"`
}

// journalRecord is one line of a journal file.
type journalRecord struct {
	Op   string    `json:"op"` // "run", "intent", "created", "deleted"
	Time time.Time `json:"time"`
	Temp
	Cloud string `json:"cloud,omitempty"` // with "run"
}

// Journal records a run's temporaries on disk before they exist, so a
// killed run's leftovers can be found. One file per run, flock'ed while
// the run lives; lines are appended and synced one at a time.
type Journal struct {
	mu    sync.Mutex
	dir   string
	Run   string
	f     *os.File
	live  map[string]Temp // by tempKey
	Cloud string          // Keystone URL of the run
}

// DefaultJournalDir is where journals go without --journal-dir:
// $CAIRN_JOURNAL_DIR, else $XDG_STATE_HOME/cairn/openstack, else
// ~/.local/state/cairn/openstack.
func DefaultJournalDir() string {
	if d := os.Getenv("CAIRN_JOURNAL_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "cairn", "openstack")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "cairn-openstack-journal")
	}
	return filepath.Join(home, ".local", "state", "cairn", "openstack")
}

// NewJournal starts the journal of a new run in dir.
func NewJournal(dir, cloud string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal directory: %w", err)
	}
	var b [4]byte
	rand.Read(b[:])
	run := time.Now().UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs // the path goes into the temporaries' metadata
	}
	f, err := os.OpenFile(filepath.Join(dir, run+".journal"), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal lock: %w", err)
	}
	j := &Journal{dir: dir, Run: run, f: f, live: map[string]Temp{}, Cloud: cloud}
	return j, j.write(journalRecord{Op: "run", Cloud: cloud})
}

// TempName builds a unique temporary name for this run.
func (j *Journal) TempName(server, what string) string {
	short := server
	if len(short) > 8 {
		short = short[:8]
	}
	return TempPrefix + j.Run + "-" + short + "-" + what
}

// Metadata is the marker metadata for a temporary of server.
func (j *Journal) Metadata(server string) map[string]string {
	m := map[string]string{MetaTemporary: "true", MetaRun: j.Run, MetaServer: server, MetaHost: hostname(),
		MetaHeartbeat: time.Now().UTC().Format(time.RFC3339)}
	if p := j.Path(); len(p) <= 255 { // Cinder's limit for a metadata value
		m[MetaJournal] = p
	}
	return m
}

func (j *Journal) write(r journalRecord) error {
	r.Time = time.Now().UTC()
	b, _ := json.Marshal(r)
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func tempKey(t Temp) string { return t.Kind + "\x00" + t.Name + "\x00" + t.ID }

// apply updates the live set with one record.
func (j *Journal) apply(op string, t Temp) {
	switch op {
	case "intent":
		j.live[tempKey(t)] = t
	case "created":
		delete(j.live, tempKey(Temp{Kind: t.Kind, Name: t.Name}))
		j.live[tempKey(t)] = t
	case "deleted":
		delete(j.live, tempKey(t))
		delete(j.live, tempKey(Temp{Kind: t.Kind, Name: t.Name}))
	}
}

func (j *Journal) record(op string, t Temp) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.apply(op, t)
	return j.write(journalRecord{Op: op, Temp: t})
}

// Intent records that t is about to be created.
func (j *Journal) Intent(t Temp) error { return j.record("intent", t) }

// Created records t with its id.
func (j *Journal) Created(t Temp) error { return j.record("created", t) }

// Deleted records that t is gone.
func (j *Journal) Deleted(t Temp) error { return j.record("deleted", t) }

// Live returns the temporaries not yet deleted, in deletion order.
func (j *Journal) Live() []Temp {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Temp, 0, len(j.live))
	for _, t := range j.live {
		out = append(out, t)
	}
	sortForDeletion(out)
	return out
}

// Path is the journal file.
func (j *Journal) Path() string { return j.f.Name() }

// Close ends the run: with nothing left the file is removed, otherwise it
// stays for `cairn openstack cleanup`.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	name := j.f.Name()
	left := len(j.live)
	if left == 0 {
		os.Remove(name)
	}
	err := j.f.Close() // releases the lock
	if left > 0 {
		return fmt.Errorf("%d temporary resources could not be deleted; they are listed in %s and `cairn openstack cleanup` retries", left, name)
	}
	return err
}

func sortForDeletion(ts []Temp) {
	sort.SliceStable(ts, func(a, b int) bool { return kindOrder[ts[a].Kind] < kindOrder[ts[b].Kind] })
}

// StaleJournals opens the journals in dir whose run is dead (their lock
// can be taken). Each is locked until Close, which removes it when its
// temporaries are all gone.
func StaleJournals(dir string) ([]*Journal, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.journal"))
	if err != nil {
		return nil, err
	}
	var out []*Journal
	for _, p := range names {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // a live run
			continue
		}
		j := &Journal{dir: dir, Run: strings.TrimSuffix(filepath.Base(p), ".journal"), f: f, live: map[string]Temp{}}
		if err := j.load(); err != nil {
			f.Close()
			return nil, fmt.Errorf("journal %s: %w", p, err)
		}
		out = append(out, j)
	}
	return out, nil
}

func (j *Journal) load() error {
	f, err := os.Open(j.f.Name())
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r journalRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue // a torn last line of a killed run
		}
		if r.Op == "run" {
			j.Cloud = r.Cloud
		}
		j.apply(r.Op, r.Temp)
	}
	return sc.Err()
}
