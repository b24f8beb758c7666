package repo

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zone tests must not depend on the host's zoneinfo
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load location %s: %v", name, err)
	}
	return loc
}

// utc parses "2006-01-02 15:04" (or with seconds) in UTC.
func utc(t *testing.T, s string) time.Time {
	t.Helper()
	return at(t, s, time.UTC)
}

func at(t *testing.T, s string, loc *time.Location) time.Time {
	t.Helper()
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if tm, err := time.ParseInLocation(layout, s, loc); err == nil {
			return tm
		}
	}
	t.Fatalf("bad time %q", s)
	return time.Time{}
}

// kept returns the IDs of the kept points, in output order.
func kept(ds []RetentionDecision) []string {
	var ids []string
	for _, d := range ds {
		if d.Keep {
			ids = append(ids, d.Point.ID)
		}
	}
	return ids
}

func reasonsByID(ds []RetentionDecision) map[string][]string {
	m := make(map[string][]string)
	for _, d := range ds {
		if d.Keep {
			m[d.Point.ID] = d.Reasons
		}
	}
	return m
}

// checkInvariants checks what must hold for every ApplyRetention output.
func checkInvariants(t *testing.T, in []PointInfo, out []RetentionDecision) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("got %d decisions for %d points", len(out), len(in))
	}
	for i, d := range out {
		if d.Keep != (len(d.Reasons) > 0) {
			t.Errorf("decision %d (%s): Keep=%v but reasons %q", i, d.Point.ID, d.Keep, d.Reasons)
		}
		if i == 0 {
			continue
		}
		prev := out[i-1].Point
		cur := d.Point
		switch {
		case prev.VM > cur.VM:
			t.Errorf("decision %d: VM %q after %q", i, cur.VM, prev.VM)
		case prev.VM == cur.VM && prev.Time.Before(cur.Time):
			t.Errorf("decision %d: %s (%s) after older %s (%s)", i, cur.ID, cur.Time, prev.ID, prev.Time)
		case prev.VM == cur.VM && prev.Time.Equal(cur.Time) && prev.ID < cur.ID:
			t.Errorf("decision %d: tie not broken by ID descending: %s after %s", i, cur.ID, prev.ID)
		}
	}
}

func TestRetentionPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       RetentionPolicy
		empty   bool
		wantErr []string // substrings; nil means valid
	}{
		{"zero", RetentionPolicy{}, true, []string{"--keep-"}},
		{"empty tag slice", RetentionPolicy{Tags: []string{}}, true, []string{"at least one --keep-*"}},
		{"last", RetentionPolicy{Last: 1}, false, nil},
		{"hourly", RetentionPolicy{Hourly: 1}, false, nil},
		{"daily", RetentionPolicy{Daily: 7}, false, nil},
		{"weekly", RetentionPolicy{Weekly: 4}, false, nil},
		{"monthly", RetentionPolicy{Monthly: 12}, false, nil},
		{"yearly", RetentionPolicy{Yearly: 3}, false, nil},
		{"within", RetentionPolicy{Within: time.Hour}, false, nil},
		{"tag", RetentionPolicy{Tags: []string{"env=prod"}}, false, nil},
		{"tag empty value", RetentionPolicy{Tags: []string{"pinned="}}, false, nil},
		{"negative", RetentionPolicy{Daily: -1, Weekly: 2}, false, []string{"--keep-daily", "negative"}},
		{"negative within", RetentionPolicy{Within: -time.Hour}, false, []string{"--keep-within"}},
		{"tag without =", RetentionPolicy{Tags: []string{"prod"}}, false, []string{`"prod"`, "key=value"}},
		{"tag empty key", RetentionPolicy{Last: 1, Tags: []string{"=x"}}, false, []string{"key=value"}},
		{"two errors", RetentionPolicy{Last: -1, Yearly: -2}, false, []string{"--keep-last", "--keep-yearly"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Empty(); got != tc.empty {
				t.Errorf("Empty() = %v, want %v", got, tc.empty)
			}
			err := tc.p.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

// dailySeries returns one point a day at 03:00 UTC, oldest first, IDs "d0000"...
func dailySeries(start time.Time, days int, vm string) []PointInfo {
	pts := make([]PointInfo, days)
	for i := range pts {
		tm := start.AddDate(0, 0, i)
		pts[i] = PointInfo{ID: fmt.Sprintf("%s-%s", vm, tm.Format("2006-01-02")), VM: vm, Time: tm}
	}
	return pts
}

func TestApplyRetentionDailySeries400(t *testing.T) {
	// 2025-01-01 .. 2026-02-04 (a Wednesday, ISO week 2026-W06).
	pts := dailySeries(time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC), 400, "vm")
	if got := pts[len(pts)-1].Time.Format("2006-01-02"); got != "2026-02-04" {
		t.Fatalf("series ends %s", got)
	}
	id := func(d string) string { return "vm-" + d }

	tests := []struct {
		name string
		p    RetentionPolicy
		want map[string][]string // kept ID -> reasons
	}{
		{
			name: "last 3",
			p:    RetentionPolicy{Last: 3},
			want: map[string][]string{
				id("2026-02-04"): {"last 1"},
				id("2026-02-03"): {"last 2"},
				id("2026-02-02"): {"last 3"},
			},
		},
		{
			name: "daily 7 weekly 4 monthly 12 yearly 3",
			p:    RetentionPolicy{Daily: 7, Weekly: 4, Monthly: 12, Yearly: 3},
			want: map[string][]string{
				id("2026-02-04"): {"daily 2026-02-04", "weekly 2026-W06", "monthly 2026-02", "yearly 2026"},
				id("2026-02-03"): {"daily 2026-02-03"},
				id("2026-02-02"): {"daily 2026-02-02"},
				id("2026-02-01"): {"daily 2026-02-01", "weekly 2026-W05"}, // Sunday
				id("2026-01-31"): {"daily 2026-01-31", "monthly 2026-01"},
				id("2026-01-30"): {"daily 2026-01-30"},
				id("2026-01-29"): {"daily 2026-01-29"},
				id("2026-01-25"): {"weekly 2026-W04"},
				id("2026-01-18"): {"weekly 2026-W03"},
				id("2025-12-31"): {"monthly 2025-12", "yearly 2025"},
				id("2025-11-30"): {"monthly 2025-11"},
				id("2025-10-31"): {"monthly 2025-10"},
				id("2025-09-30"): {"monthly 2025-09"},
				id("2025-08-31"): {"monthly 2025-08"},
				id("2025-07-31"): {"monthly 2025-07"},
				id("2025-06-30"): {"monthly 2025-06"},
				id("2025-05-31"): {"monthly 2025-05"},
				id("2025-04-30"): {"monthly 2025-04"},
				id("2025-03-31"): {"monthly 2025-03"},
				// yearly 3 has budget left but no third year exists.
			},
		},
		{
			name: "monthly budget larger than history",
			p:    RetentionPolicy{Monthly: 100},
			want: func() map[string][]string {
				m := map[string][]string{id("2026-02-04"): {"monthly 2026-02"}, id("2026-01-31"): {"monthly 2026-01"}}
				for mo := 1; mo <= 12; mo++ {
					last := time.Date(2025, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC)
					m[id(last.Format("2006-01-02"))] = []string{"monthly " + last.Format("2006-01")}
				}
				return m
			}(),
		},
		{
			name: "daily 400 keeps everything",
			p:    RetentionPolicy{Daily: 400},
			want: func() map[string][]string {
				m := map[string][]string{}
				for _, pt := range pts {
					m[pt.ID] = []string{"daily " + pt.Time.Format("2006-01-02")}
				}
				return m
			}(),
		},
		{
			name: "weekly across ISO year start",
			p:    RetentionPolicy{Weekly: 6},
			want: map[string][]string{
				id("2026-02-04"): {"weekly 2026-W06"},
				id("2026-02-01"): {"weekly 2026-W05"},
				id("2026-01-25"): {"weekly 2026-W04"},
				id("2026-01-18"): {"weekly 2026-W03"},
				id("2026-01-11"): {"weekly 2026-W02"},
				id("2026-01-04"): {"weekly 2026-W01"}, // W01 of 2026 starts Monday 2025-12-29
			},
		},
		{
			name: "within 10d",
			p:    RetentionPolicy{Within: 10 * 24 * time.Hour},
			want: func() map[string][]string {
				// Strictly newer than newest-10d: 9 days back, not the 10th.
				m := map[string][]string{}
				for _, pt := range pts[len(pts)-10:] {
					m[pt.ID] = []string{"within 10d"}
				}
				return m
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Validate(); err != nil {
				t.Fatal(err)
			}
			out := ApplyRetention(pts, tc.p, time.UTC)
			checkInvariants(t, pts, out)
			got := reasonsByID(out)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("kept %d points, want %d", len(got), len(tc.want))
				for id, r := range got {
					if w, ok := tc.want[id]; !ok || !reflect.DeepEqual(w, r) {
						t.Errorf("  got  %s: %q (want %q)", id, r, w)
					}
				}
				for id, w := range tc.want {
					if _, ok := got[id]; !ok {
						t.Errorf("  missing %s: %q", id, w)
					}
				}
			}
		})
	}
}

func TestApplyRetentionSmall(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	tests := []struct {
		name   string
		points []PointInfo
		p      RetentionPolicy
		loc    *time.Location
		want   []string            // kept IDs in output order
		reason map[string][]string // optional exact reasons for some IDs
	}{
		{
			name:   "no points",
			points: nil,
			p:      RetentionPolicy{Last: 3},
			want:   nil,
		},
		{
			name: "last larger than history",
			points: []PointInfo{
				{ID: "a", VM: "vm", Time: utc(t, "2026-01-01 00:00")},
				{ID: "b", VM: "vm", Time: utc(t, "2026-01-02 00:00")},
			},
			p:      RetentionPolicy{Last: 5},
			want:   []string{"b", "a"},
			reason: map[string][]string{"b": {"last 1"}, "a": {"last 2"}},
		},
		{
			name: "hourly keeps newest of each hour",
			points: []PointInfo{
				{ID: "1000", VM: "vm", Time: utc(t, "2026-11-22 10:00")},
				{ID: "1020", VM: "vm", Time: utc(t, "2026-11-22 10:20")},
				{ID: "1040", VM: "vm", Time: utc(t, "2026-11-22 10:40")},
				{ID: "1100", VM: "vm", Time: utc(t, "2026-11-22 11:00")},
				{ID: "1159", VM: "vm", Time: utc(t, "2026-11-22 11:59:59")},
				{ID: "1300", VM: "vm", Time: utc(t, "2026-11-22 13:00")},
				{ID: "0900", VM: "vm", Time: utc(t, "2026-11-22 09:00")},
			},
			p:    RetentionPolicy{Hourly: 3},
			want: []string{"1300", "1159", "1040"},
			reason: map[string][]string{
				"1300": {"hourly 2026-11-22 13:00Z"},
				"1159": {"hourly 2026-11-22 11:00Z"},
				"1040": {"hourly 2026-11-22 10:00Z"},
			},
		},
		{
			name: "rules are a union with reasons in rule order",
			points: []PointInfo{
				{ID: "new", VM: "vm", Time: utc(t, "2026-11-22 12:00"), Tags: map[string]string{"env": "prod"}},
				{ID: "mid", VM: "vm", Time: utc(t, "2026-11-22 08:00")},
				{ID: "old", VM: "vm", Time: utc(t, "2026-11-21 08:00")},
				{ID: "older", VM: "vm", Time: utc(t, "2026-11-10 08:00"), Tags: map[string]string{"env": "prod", "pin": "yes"}},
				{ID: "oldest", VM: "vm", Time: utc(t, "2026-11-01 08:00"), Tags: map[string]string{"env": "dev"}},
			},
			p:    RetentionPolicy{Last: 1, Daily: 2, Within: 36 * time.Hour, Tags: []string{"env=prod", "pin=yes"}},
			want: []string{"new", "mid", "old", "older"},
			reason: map[string][]string{
				"new":   {"last 1", "daily 2026-11-22", "within 1d12h", "tag env=prod"},
				"mid":   {"within 1d12h"},
				"old":   {"daily 2026-11-21", "within 1d12h"},
				"older": {"tag env=prod", "tag pin=yes"},
			},
		},
		{
			name: "within is relative to the VM's newest point and strict",
			points: []PointInfo{
				{ID: "a0", VM: "a", Time: utc(t, "2026-06-30 00:00")},
				{ID: "a1", VM: "a", Time: utc(t, "2026-06-29 00:00")},
				{ID: "a7", VM: "a", Time: utc(t, "2026-06-23 00:00")}, // exactly 7d before newest
				{ID: "a8", VM: "a", Time: utc(t, "2026-06-22 00:00")},
				{ID: "b0", VM: "b", Time: utc(t, "2025-01-10 00:00")},
				{ID: "b6", VM: "b", Time: utc(t, "2025-01-04 00:00:01")},
				{ID: "b9", VM: "b", Time: utc(t, "2025-01-01 00:00")},
			},
			p:      RetentionPolicy{Within: 7 * 24 * time.Hour},
			want:   []string{"a0", "a1", "b0", "b6"},
			reason: map[string][]string{"a0": {"within 7d"}, "b6": {"within 7d"}},
		},
		{
			name: "tags",
			points: []PointInfo{
				{ID: "p1", VM: "vm", Time: utc(t, "2026-01-05 00:00"), Tags: map[string]string{"env": "prod"}},
				{ID: "d1", VM: "vm", Time: utc(t, "2026-01-04 00:00"), Tags: map[string]string{"env": "dev"}},
				{ID: "n1", VM: "vm", Time: utc(t, "2026-01-03 00:00")},
				{ID: "k1", VM: "vm", Time: utc(t, "2026-01-02 00:00"), Tags: map[string]string{"keep": ""}},
				{ID: "x1", VM: "vm", Time: utc(t, "2026-01-01 00:00"), Tags: map[string]string{"prod": "env"}},
			},
			p:      RetentionPolicy{Tags: []string{"env=prod", "keep="}},
			want:   []string{"p1", "k1"},
			reason: map[string][]string{"p1": {"tag env=prod"}, "k1": {"tag keep="}},
		},
		{
			name: "multiple VMs have independent budgets and sort by VM",
			points: []PointInfo{
				{ID: "web-2", VM: "web", Time: utc(t, "2026-03-02 10:00")},
				{ID: "db-1", VM: "db", Time: utc(t, "2026-03-01 10:00")},
				{ID: "web-1", VM: "web", Time: utc(t, "2026-03-01 10:00")},
				{ID: "db-3", VM: "db", Time: utc(t, "2026-03-03 10:00")},
				{ID: "db-3b", VM: "db", Time: utc(t, "2026-03-03 09:00")},
				{ID: "web-3", VM: "web", Time: utc(t, "2026-03-03 10:00")},
				{ID: "db-2", VM: "db", Time: utc(t, "2026-03-02 10:00")},
			},
			p:    RetentionPolicy{Daily: 2},
			want: []string{"db-3", "db-2", "web-3", "web-2"},
		},
		{
			name: "daily buckets follow loc, not UTC",
			points: []PointInfo{
				// 19:30 and 21:00 EDT on 2026-06-10: one New York day, two UTC days.
				{ID: "late", VM: "vm", Time: utc(t, "2026-06-11 01:00")},
				{ID: "early", VM: "vm", Time: utc(t, "2026-06-10 23:30")},
			},
			p:      RetentionPolicy{Daily: 5},
			loc:    ny,
			want:   []string{"late"},
			reason: map[string][]string{"late": {"daily 2026-06-10"}},
		},
		{
			name: "same points in UTC are two days",
			points: []PointInfo{
				{ID: "late", VM: "vm", Time: utc(t, "2026-06-11 01:00")},
				{ID: "early", VM: "vm", Time: utc(t, "2026-06-10 23:30")},
			},
			p:    RetentionPolicy{Daily: 5},
			loc:  time.UTC,
			want: []string{"late", "early"},
		},
		{
			name: "nil loc means UTC",
			points: []PointInfo{
				{ID: "late", VM: "vm", Time: utc(t, "2026-06-11 01:00").In(ny)},
				{ID: "early", VM: "vm", Time: utc(t, "2026-06-10 23:30").In(ny)},
			},
			p:      RetentionPolicy{Daily: 5},
			want:   []string{"late", "early"},
			reason: map[string][]string{"late": {"daily 2026-06-11"}, "early": {"daily 2026-06-10"}},
		},
		{
			name: "weekly across a 53-week ISO year",
			points: []PointInfo{
				{ID: "2027-01-04", VM: "vm", Time: utc(t, "2027-01-04 12:00")}, // Mon, 2027-W01
				{ID: "2027-01-03", VM: "vm", Time: utc(t, "2027-01-03 12:00")}, // Sun, 2026-W53
				{ID: "2026-12-31", VM: "vm", Time: utc(t, "2026-12-31 12:00")}, // Thu, 2026-W53
				{ID: "2026-12-28", VM: "vm", Time: utc(t, "2026-12-28 12:00")}, // Mon, 2026-W53
				{ID: "2026-12-27", VM: "vm", Time: utc(t, "2026-12-27 12:00")}, // Sun, 2026-W52
			},
			p:    RetentionPolicy{Weekly: 3, Yearly: 2},
			want: []string{"2027-01-04", "2027-01-03", "2026-12-31", "2026-12-27"},
			reason: map[string][]string{
				"2027-01-04": {"weekly 2027-W01", "yearly 2027"},
				"2027-01-03": {"weekly 2026-W53"},
				"2026-12-31": {"yearly 2026"},
				"2026-12-27": {"weekly 2026-W52"},
			},
		},
		{
			name: "ties broken by ID descending",
			points: []PointInfo{
				{ID: "b", VM: "vm", Time: utc(t, "2026-05-05 05:05")},
				{ID: "c", VM: "vm", Time: utc(t, "2026-05-05 05:05")},
				{ID: "a", VM: "vm", Time: utc(t, "2026-05-05 05:05")},
				{ID: "z", VM: "vm", Time: utc(t, "2026-05-04 05:05")},
			},
			p:      RetentionPolicy{Last: 1, Daily: 2},
			want:   []string{"c", "z"},
			reason: map[string][]string{"c": {"last 1", "daily 2026-05-05"}, "z": {"daily 2026-05-04"}},
		},
		{
			name: "ties compare instants, not wall clock or zone",
			points: []PointInfo{
				{ID: "a", VM: "vm", Time: utc(t, "2026-05-05 05:05").In(ny)},
				{ID: "b", VM: "vm", Time: utc(t, "2026-05-05 05:05")},
			},
			p:    RetentionPolicy{Last: 1},
			want: []string{"b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := ApplyRetention(tc.points, tc.p, tc.loc)
			checkInvariants(t, tc.points, out)
			if got := kept(out); !slices.Equal(got, tc.want) {
				t.Errorf("kept %q, want %q", got, tc.want)
			}
			rs := reasonsByID(out)
			for id, want := range tc.reason {
				if !slices.Equal(rs[id], want) {
					t.Errorf("reasons for %s = %q, want %q", id, rs[id], want)
				}
			}
		})
	}
}

// hourlyLocal returns one point per real hour from start up to and including
// end, IDs formatted as local time with the UTC offset.
func hourlyLocal(start, end time.Time, loc *time.Location) []PointInfo {
	var pts []PointInfo
	for tm := start; !tm.After(end); tm = tm.Add(time.Hour) {
		l := tm.In(loc)
		pts = append(pts, PointInfo{ID: l.Format("2006-01-02 15:04Z07:00"), VM: "vm", Time: l})
	}
	return pts
}

func TestApplyRetentionDST(t *testing.T) {
	for _, zone := range []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe"} {
		t.Run(zone, func(t *testing.T) {
			loc := mustLoc(t, zone)
			// Hourly points over a whole year: every local day, whatever its
			// length (23, 24, 24.5, 25 hours...), must be exactly one daily
			// bucket whose newest point is the last one before local midnight.
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
			end := time.Date(2027, 1, 1, 0, 0, 0, 0, loc).Add(-time.Minute)
			pts := hourlyLocal(start, end, loc)
			perDay := map[string]int{}
			for _, pt := range pts {
				perDay[pt.Time.Format("2006-01-02")]++
			}
			if len(perDay) != 365 {
				t.Fatalf("series spans %d local days", len(perDay))
			}
			out := ApplyRetention(pts, RetentionPolicy{Daily: 1000}, loc)
			checkInvariants(t, pts, out)
			var keptDays []string
			for i, d := range out {
				if !d.Keep {
					continue
				}
				day := d.Point.Time.In(loc).Format("2006-01-02")
				keptDays = append(keptDays, day)
				if want := "daily " + day; !slices.Equal(d.Reasons, []string{want}) {
					t.Errorf("%s: reasons %q, want %q", d.Point.ID, d.Reasons, want)
				}
				// The kept point is the newest of its day: the next newer
				// point (if any) is on a later local day.
				if i > 0 && out[i-1].Point.Time.In(loc).Format("2006-01-02") == day {
					t.Errorf("%s kept but newer %s is on the same day", d.Point.ID, out[i-1].Point.ID)
				}
			}
			if len(keptDays) != 365 {
				t.Errorf("kept %d daily points, want 365", len(keptDays))
			}
			// Spot-check that the zone really has uneven days in this series.
			lengths := map[int]bool{}
			for _, n := range perDay {
				lengths[n] = true
			}
			if len(lengths) < 2 {
				t.Errorf("no DST transition in %s during 2026? day lengths %v", zone, lengths)
			}
		})
	}
}

func TestApplyRetentionDSTHours(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	// 2026-11-01: clocks go from 01:59:59 EDT back to 01:00:00 EST, so the
	// wall-clock hour 01 happens twice; those are two different hours.
	pts := []PointInfo{
		{ID: "0030", VM: "vm", Time: at(t, "2026-11-01 04:30", time.UTC)},                // 00:30 EDT
		{ID: "0110edt", VM: "vm", Time: at(t, "2026-11-01 05:10", time.UTC)},             // 01:10 EDT
		{ID: "0130edt", VM: "vm", Time: at(t, "2026-11-01 05:30", time.UTC)},             // 01:30 EDT
		{ID: "0110est", VM: "vm", Time: at(t, "2026-11-01 06:10", time.UTC)},             // 01:10 EST
		{ID: "0130est", VM: "vm", Time: at(t, "2026-11-01 06:30", time.UTC)},             // 01:30 EST
		{ID: "0230est", VM: "vm", Time: at(t, "2026-11-01 07:30", time.UTC)},             // 02:30 EST
		{ID: "prevday", VM: "vm", Time: at(t, "2026-11-01 03:59", time.UTC)},             // 23:59 EDT Oct 31
		{ID: "spring", VM: "vm", Time: at(t, "2026-03-08 03:30", ny)},                    // 03:30 EDT (02:xx does not exist that day)
		{ID: "springb", VM: "vm", Time: at(t, "2026-03-08 01:30", ny)},                   // 01:30 EST
		{ID: "springc", VM: "vm", Time: at(t, "2026-03-08 04:00", ny).Add(-time.Minute)}, // 03:59 EDT
	}
	out := ApplyRetention(pts, RetentionPolicy{Hourly: 100, Daily: 100}, ny)
	checkInvariants(t, pts, out)
	want := map[string][]string{
		"0230est": {"hourly 2026-11-01 02:00-05:00", "daily 2026-11-01"},
		"0130est": {"hourly 2026-11-01 01:00-05:00"},
		"0130edt": {"hourly 2026-11-01 01:00-04:00"},
		"0030":    {"hourly 2026-11-01 00:00-04:00"},
		"prevday": {"hourly 2026-10-31 23:00-04:00", "daily 2026-10-31"},
		"springc": {"hourly 2026-03-08 03:00-04:00", "daily 2026-03-08"},
		"springb": {"hourly 2026-03-08 01:00-05:00"},
	}
	got := reasonsByID(out)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestApplyRetentionDeterministic(t *testing.T) {
	base := utc(t, "2026-11-22 08:00")
	var pts []PointInfo
	for _, vm := range []string{"b", "a", "c"} {
		for i := 0; i < 12; i++ {
			// Only four distinct instants, three points each.
			pts = append(pts, PointInfo{
				ID:   fmt.Sprintf("%s-%02d", vm, i),
				VM:   vm,
				Time: base.Add(time.Duration(i%4) * 20 * time.Hour),
			})
		}
	}
	p := RetentionPolicy{Last: 2, Hourly: 2, Daily: 2}
	orig := slices.Clone(pts)
	want := ApplyRetention(pts, p, time.UTC)
	if !reflect.DeepEqual(pts, orig) {
		t.Fatal("ApplyRetention modified its input")
	}
	checkInvariants(t, pts, want)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		shuffled := slices.Clone(pts)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := ApplyRetention(shuffled, p, time.UTC); !reflect.DeepEqual(got, want) {
			t.Fatalf("output depends on input order:\n got %v\nwant %v", kept(got), kept(want))
		}
	}
	rs := reasonsByID(want)
	// Instants: +60h (11,7,3) = 11-24 20:00, +40h (10,6,2) = 11-24 00:00,
	// +20h (9,5,1) = 11-23 04:00, +0h (8,4,0) = 11-22 08:00.
	wantA := map[string][]string{
		"a-11": {"last 1", "hourly 2026-11-24 20:00Z", "daily 2026-11-24"},
		"a-07": {"last 2"},
		"a-10": {"hourly 2026-11-24 00:00Z"},
		"a-09": {"daily 2026-11-23"},
	}
	for id, w := range wantA {
		if !slices.Equal(rs[id], w) {
			t.Errorf("%s: reasons %q, want %q", id, rs[id], w)
		}
	}
	if n := len(kept(want)); n != 12 {
		t.Errorf("kept %d points, want 4 per VM", n)
	}
}

// referenceRetention is a deliberately different (and slow) formulation of
// the policy used to cross-check ApplyRetention: for each rule, list the
// distinct buckets newest first, take the first n, and keep the newest point
// of each.
func referenceRetention(points []PointInfo, p RetentionPolicy, loc *time.Location) map[string]bool {
	keep := map[string]bool{}
	byVM := map[string][]PointInfo{}
	for _, pt := range points {
		byVM[pt.VM] = append(byVM[pt.VM], pt)
	}
	newer := func(a, b PointInfo) bool {
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.ID > b.ID
	}
	type rule struct {
		n   int
		key func(time.Time) string
	}
	rules := []rule{
		{p.Hourly, func(t time.Time) string {
			// Hours counted on the absolute time line, aligned to the zone.
			_, off := t.Zone()
			return fmt.Sprint((t.Unix()+int64(off))/3600, off)
		}},
		{p.Daily, func(t time.Time) string { y, m, d := t.Date(); return fmt.Sprint(y, m, d) }},
		{p.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, w) }},
		{p.Monthly, func(t time.Time) string { return fmt.Sprint(t.Year(), t.Month()) }},
		{p.Yearly, func(t time.Time) string { return fmt.Sprint(t.Year()) }},
	}
	for _, pts := range byVM {
		var newest PointInfo
		for i, pt := range pts {
			if i == 0 || newer(pt, newest) {
				newest = pt
			}
		}
		for _, pt := range pts {
			rank := 0
			for _, o := range pts {
				if newer(o, pt) {
					rank++
				}
			}
			if rank < p.Last {
				keep[pt.ID] = true
			}
			if p.Within > 0 && pt.Time.After(newest.Time.Add(-p.Within)) {
				keep[pt.ID] = true
			}
			for _, tag := range p.Tags {
				k, v, _ := strings.Cut(tag, "=")
				if got, ok := pt.Tags[k]; ok && got == v {
					keep[pt.ID] = true
				}
			}
		}
		for _, r := range rules {
			best := map[string]PointInfo{}
			for _, pt := range pts {
				k := r.key(pt.Time.In(loc))
				if b, ok := best[k]; !ok || newer(pt, b) {
					best[k] = pt
				}
			}
			heads := make([]PointInfo, 0, len(best))
			for _, b := range best {
				heads = append(heads, b)
			}
			sort.Slice(heads, func(i, j int) bool { return newer(heads[i], heads[j]) })
			for i := 0; i < r.n && i < len(heads); i++ {
				keep[heads[i].ID] = true
			}
		}
	}
	return keep
}

func TestApplyRetentionMatchesReference(t *testing.T) {
	locs := []*time.Location{time.UTC, mustLoc(t, "America/New_York"), mustLoc(t, "Asia/Kolkata"), mustLoc(t, "Europe/Berlin")}
	r := rand.New(rand.NewPCG(42, 7))
	base := time.Date(2025, 10, 20, 0, 0, 0, 0, time.UTC)
	spans := []time.Duration{48 * time.Hour, 30 * 24 * time.Hour, 800 * 24 * time.Hour}
	for iter := 0; iter < 400; iter++ {
		span := spans[r.IntN(len(spans))]
		n := r.IntN(60)
		var pts []PointInfo
		for i := 0; i < n; i++ {
			tm := base.Add(time.Duration(r.Int64N(int64(span))))
			if i > 0 && r.IntN(5) == 0 {
				tm = pts[r.IntN(len(pts))].Time // exact tie
			}
			tm = tm.Truncate(time.Minute)
			var tags map[string]string
			if r.IntN(4) == 0 {
				tags = map[string]string{"env": []string{"prod", "dev"}[r.IntN(2)]}
			}
			pts = append(pts, PointInfo{ID: fmt.Sprintf("p%03d", i), VM: fmt.Sprintf("vm%d", r.IntN(3)), Time: tm, Tags: tags})
		}
		p := RetentionPolicy{
			Last:    r.IntN(4),
			Hourly:  r.IntN(6),
			Daily:   r.IntN(6),
			Weekly:  r.IntN(4),
			Monthly: r.IntN(4),
			Yearly:  r.IntN(3),
		}
		if r.IntN(3) == 0 {
			p.Within = time.Duration(r.Int64N(int64(span)))
		}
		if r.IntN(3) == 0 {
			p.Tags = []string{"env=prod"}
		}
		loc := locs[r.IntN(len(locs))]
		out := ApplyRetention(pts, p, loc)
		checkInvariants(t, pts, out)
		ref := referenceRetention(pts, p, loc)
		for _, d := range out {
			if d.Keep != ref[d.Point.ID] {
				t.Fatalf("iter %d (%+v, %s): %s at %s: Keep=%v (%q), reference says %v",
					iter, p, loc, d.Point.ID, d.Point.Time.In(loc), d.Keep, d.Reasons, ref[d.Point.ID])
			}
		}
	}
}

func TestFormatRetentionDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "7d"},
		{36 * time.Hour, "1d12h"},
		{90 * time.Minute, "1h30m"},
		{24*time.Hour + 5*time.Second, "1d5s"},
		{45 * time.Second, "45s"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
	}
	for _, tc := range tests {
		if got := formatRetentionDuration(tc.d); got != tc.want {
			t.Errorf("formatRetentionDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
