package repo

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RetentionPolicy says which restore points to keep per VM. Zero fields keep
// nothing by that rule; a policy with every field zero is invalid (Validate
// returns an error saying to give at least one --keep-* flag).
//
// The rules are evaluated independently for every point and a point is kept
// if any rule keeps it (a union, as in restic's forget):
//
//   - Last n keeps the n newest points of the VM.
//   - Hourly, Daily, Weekly, Monthly and Yearly n keep, walking from the
//     newest point to the oldest, the newest point of each of the n most
//     recent hours, days, ISO weeks, months or years that contain a point.
//   - Within keeps every point strictly newer than (newest point − Within).
//   - Tags keeps every point carrying any of the listed tags.
type RetentionPolicy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration // keep every point newer than newest-Within
	Tags                                         []string      // keep points carrying any of these tags ("k=v")
}

// Empty reports whether the policy has no rule at all.
func (p RetentionPolicy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 &&
		p.Monthly == 0 && p.Yearly == 0 && p.Within == 0 && len(p.Tags) == 0
}

// Validate checks the policy: it must have at least one rule, no negative
// counts or duration, and every tag must be "key=value" with a non-empty key.
func (p RetentionPolicy) Validate() error {
	if p.Empty() {
		return errors.New("empty retention policy would forget every restore point: give at least one --keep-* flag " +
			"(--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within, --keep-tag)")
	}
	var errs []error
	for _, c := range []struct {
		name string
		n    int
	}{
		{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily},
		{"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly},
	} {
		if c.n < 0 {
			errs = append(errs, fmt.Errorf("--keep-%s must not be negative (got %d)", c.name, c.n))
		}
	}
	if p.Within < 0 {
		errs = append(errs, fmt.Errorf("--keep-within must not be negative (got %s)", p.Within))
	}
	for _, t := range p.Tags {
		k, _, ok := strings.Cut(t, "=")
		if !ok || strings.TrimSpace(k) == "" {
			errs = append(errs, fmt.Errorf("--keep-tag %q: want key=value", t))
		}
	}
	return errors.Join(errs...)
}

// PointInfo is what the policy needs of a restore point.
type PointInfo struct {
	ID   string
	VM   string
	Time time.Time
	Tags map[string]string
}

// RetentionDecision is the decision for one point: Keep, and the Reasons
// (e.g. "last 1", "daily 2026-11-22", "within 7d", "tag env=prod"). Reasons
// is empty for points that are to be forgotten.
type RetentionDecision struct {
	Point   PointInfo
	Keep    bool
	Reasons []string
}

// bucketRule is one of the calendar rules (hourly, daily, ...).
type bucketRule struct {
	name   string
	budget int
	key    func(t time.Time) string // t is already in the policy's location
}

func bucketRules(p RetentionPolicy) []bucketRule {
	return []bucketRule{
		// The hour key carries the UTC offset so that the repeated wall-clock
		// hour at the end of daylight saving time counts as two hours.
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02 15:00Z07:00") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.Yearly, func(t time.Time) string { return strconv.Itoa(t.Year()) }},
	}
}

// pointNewer orders points newest first; points with identical timestamps are
// ordered by ID descending (so with time-sortable IDs the later-created point
// counts as newer). Points equal in both keep their input order.
func pointNewer(a, b PointInfo) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID > b.ID
}

// ApplyRetention groups points by VM and decides for each, newest first
// within each VM; output sorted by VM then time descending (ties: ID
// descending). Bucket keys are computed in loc (UTC if nil). The input slice is
// not modified. Callers should Validate the policy first: an empty policy keeps
// nothing and negative counts are treated as zero.
func ApplyRetention(points []PointInfo, p RetentionPolicy, loc *time.Location) []RetentionDecision {
	if loc == nil {
		loc = time.UTC
	}
	sorted := make([]PointInfo, len(points))
	copy(sorted, points)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].VM != sorted[j].VM {
			return sorted[i].VM < sorted[j].VM
		}
		return pointNewer(sorted[i], sorted[j])
	})

	out := make([]RetentionDecision, 0, len(sorted))
	for start := 0; start < len(sorted); {
		end := start + 1
		for end < len(sorted) && sorted[end].VM == sorted[start].VM {
			end++
		}
		out = append(out, decideVM(sorted[start:end], p, loc)...)
		start = end
	}
	return out
}

// decideVM applies the policy to the points of one VM, sorted newest first.
func decideVM(points []PointInfo, p RetentionPolicy, loc *time.Location) []RetentionDecision {
	rules := bucketRules(p)
	seen := make([]map[string]bool, len(rules))
	for i := range seen {
		seen[i] = make(map[string]bool)
	}
	var cutoff time.Time
	if p.Within > 0 && len(points) > 0 {
		cutoff = points[0].Time.Add(-p.Within)
	}
	within := formatRetentionDuration(p.Within)

	out := make([]RetentionDecision, 0, len(points))
	for n, pt := range points {
		var reasons []string
		if n < p.Last {
			reasons = append(reasons, fmt.Sprintf("last %d", n+1))
		}
		lt := pt.Time.In(loc)
		for i := range rules {
			r := &rules[i]
			if r.budget <= 0 {
				continue
			}
			k := r.key(lt)
			if seen[i][k] {
				continue
			}
			seen[i][k] = true
			r.budget--
			reasons = append(reasons, r.name+" "+k)
		}
		if p.Within > 0 && pt.Time.After(cutoff) {
			reasons = append(reasons, "within "+within)
		}
		for _, t := range p.Tags {
			if hasTag(pt.Tags, t) {
				reasons = append(reasons, "tag "+t)
			}
		}
		out = append(out, RetentionDecision{Point: pt, Keep: len(reasons) > 0, Reasons: reasons})
	}
	return out
}

// hasTag reports whether tags carry tag, given as "key=value". A tag without
// "=" (rejected by Validate) matches any point that has that key.
func hasTag(tags map[string]string, tag string) bool {
	k, v, ok := strings.Cut(tag, "=")
	got, present := tags[k]
	if !present {
		return false
	}
	return !ok || got == v
}

// formatRetentionDuration renders d compactly with a day unit: 168h -> "7d",
// 36h -> "1d12h", 90m -> "1h30m". Durations with sub-second parts use
// time.Duration's own format.
func formatRetentionDuration(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		d      time.Duration
		suffix string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.suffix)
			d -= n * u.d
		}
	}
	return b.String()
}
