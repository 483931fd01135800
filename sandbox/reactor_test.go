package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var reactorBuilds sync.Map // output name → *reactorBuild

type reactorBuild struct {
	once sync.Once
	wasm []byte
	err  error
}

// reactorGuest returns the Go guest testdata/goguests/NAME built as a
// reactor (-buildmode=c-shared); goGuest(tb, NAME) is the same source built
// as a command.
func reactorGuest(tb testing.TB, name string) []byte {
	tb.Helper()
	return buildGo(tb, name+".reactor", "./testdata/goguests/"+name, "-buildmode=c-shared")
}

// buildGo builds the Go package pkg for wasip1 with extra go build flags,
// once per test binary, as guestDir/out.wasm.
func buildGo(tb testing.TB, out, pkg string, flags ...string) []byte {
	tb.Helper()
	goGuest(tb, "echo") // makes guestDir
	v, _ := reactorBuilds.LoadOrStore(out, &reactorBuild{})
	b := v.(*reactorBuild)
	b.once.Do(func() {
		out := filepath.Join(guestDir, out+".wasm")
		args := append(append([]string{"build", "-trimpath"}, flags...), "-o", out, pkg)
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = errors.New("build " + pkg + ": " + err.Error() + "\n" + string(msg))
			return
		}
		b.wasm, b.err = os.ReadFile(out)
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.wasm
}

// reactorReport is what testdata/goguests/reactor outputs.
type reactorReport struct {
	Counter  int      `json:"counter"`
	Rand     string   `json:"rand"`
	InitRand string   `json:"init_rand"`
	Wall     int64    `json:"wall"`
	InitWall int64    `json:"init_wall"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Now      int64    `json:"now"`
	Zero     bool     `json:"zero"`
}

func runReport(t *testing.T, m *Module, rc RunConfig) (reactorReport, Result) {
	t.Helper()
	d := NewMemDispatcher([]byte(`{}`), nil)
	if rc.Dispatcher != nil {
		d = rc.Dispatcher.(*MemDispatcher)
	}
	rc.Dispatcher = d
	res := runGuest(t, m, rc)
	wantOutcome(t, res, OutcomeSuccess)
	var rep reactorReport
	if err := json.Unmarshal(d.TaskOutput(), &rep); err != nil {
		t.Fatalf("output %q: %v", d.TaskOutput(), err)
	}
	return rep, res
}

func TestReactorRunsFromSnapshot(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "reactor"))
	if m.Kind() != ModuleReactor {
		t.Fatalf("kind %v, want reactor", m.Kind())
	}
	if err := m.Preinitialized(); err != nil {
		t.Fatalf("Preinitialized: %v", err)
	}
	rep, res := runReport(t, m, RunConfig{TaskID: "t1"})
	if rep.Counter != 1 {
		t.Fatalf("counter %d, want 1", rep.Counter)
	}
	// Initialization ran once, at Compile, but its output is every
	// attempt's, as a command's would be.
	wantContains(t, "stdout", string(res.Stdout), "reactor: init ran\nreactor: run 1\n")
	if len(rep.Args) != 1 || rep.Args[0] != m.Name() || len(rep.Env) != 0 {
		t.Fatalf("args %q env %q, want [%s] and none", rep.Args, rep.Env, m.Name())
	}

	cmd := mustCompile(t, shared, goGuest(t, "reactor"))
	if cmd.Kind() != ModuleCommand || !errors.Is(cmd.Preinitialized(), ErrNotReactor) {
		t.Fatalf("command build: kind %v, Preinitialized %v", cmd.Kind(), cmd.Preinitialized())
	}
	crep, _ := runReport(t, cmd, RunConfig{TaskID: "t1"})
	if crep.Counter != 1 {
		t.Fatalf("command counter %d, want 1", crep.Counter)
	}
}

// Two attempts restored from one snapshot share nothing: the counter each
// run increments starts from the snapshot's value every time, also when the
// attempts run at once.
func TestReactorAttemptsShareNoState(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "reactor"))
	for i := range 3 {
		if rep, _ := runReport(t, m, RunConfig{TaskID: "same"}); rep.Counter != 1 {
			t.Fatalf("attempt %d: counter %d, want 1", i, rep.Counter)
		}
	}
	var wg sync.WaitGroup
	counters := make([]int, 8)
	for i := range counters {
		wg.Go(func() {
			d := NewMemDispatcher([]byte(`{}`), nil)
			res := shared.Run(context.Background(), m, RunConfig{TaskID: "par", Dispatcher: d})
			if res.Outcome != OutcomeSuccess {
				t.Errorf("attempt %d: %v %v", i, res.Outcome, res.Err)
				return
			}
			var rep reactorReport
			_ = json.Unmarshal(d.TaskOutput(), &rep)
			counters[i] = rep.Counter
		})
	}
	wg.Wait()
	for i, c := range counters {
		if c != 1 {
			t.Fatalf("concurrent attempt %d: counter %d, want 1", i, c)
		}
	}
}

// The clock and the random stream are not frozen into the snapshot: a run
// reads the random bytes its task's seed gives (the same bytes the command
// build of the same source reads), a retry reads them again, another task
// reads others; WASI time continues past initialization; orloj_v1.now is
// the attempt's.
func TestReactorClockAndRandomNotFrozen(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "reactor"))
	cmd := mustCompile(t, shared, goGuest(t, "reactor"))
	at := func(ns int64) *MemDispatcher {
		return NewMemDispatcher([]byte(`{}`), nil).SetClock(func() time.Time { return time.Unix(0, ns) })
	}
	a1, _ := runReport(t, m, RunConfig{TaskID: "task-a", Dispatcher: at(1000)})
	a2, _ := runReport(t, m, RunConfig{TaskID: "task-a", Dispatcher: at(2000)})
	b1, _ := runReport(t, m, RunConfig{TaskID: "task-b", Dispatcher: at(3000)})
	ca, _ := runReport(t, cmd, RunConfig{TaskID: "task-a"})

	if a1.Rand != a2.Rand {
		t.Fatalf("a retry of task-a read %s, the first attempt %s", a2.Rand, a1.Rand)
	}
	if a1.Rand == b1.Rand {
		t.Fatalf("task-a and task-b read the same random bytes %s: the stream is frozen", a1.Rand)
	}
	if a1.Rand != ca.Rand {
		t.Fatalf("reactor read %s, the command build of the same task %s", a1.Rand, ca.Rand)
	}
	// What initialization read is the agent version's, not a task's.
	if a1.InitRand != b1.InitRand {
		t.Fatalf("init_rand differs between tasks: %s, %s", a1.InitRand, b1.InitRand)
	}
	if a1.Now != 1000 || a2.Now != 2000 || b1.Now != 3000 {
		t.Fatalf("now: %d, %d, %d; want each attempt's dispatcher's (1000, 2000, 3000)", a1.Now, a2.Now, b1.Now)
	}
	if a1.Wall <= a1.InitWall || a1.Wall != a2.Wall {
		t.Fatalf("WASI wall clock: init %d, runs %d and %d; want the runs past init and equal", a1.InitWall, a1.Wall, a2.Wall)
	}
}

// Args and environ are read by the Go runtime during initialization, so
// they are part of the snapshot's key: each attempt sees its own.
func TestReactorArgsAndEnv(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "reactor"))
	rep, _ := runReport(t, m, RunConfig{Name: "agent-x", Args: []string{"a1"}, Env: map[string]string{"B": "2", "A": "1"}})
	if strings.Join(rep.Args, ",") != "agent-x,a1" || strings.Join(rep.Env, ",") != "A=1,B=2" {
		t.Fatalf("args %q env %q", rep.Args, rep.Env)
	}
	rep, _ = runReport(t, m, RunConfig{})
	if strings.Join(rep.Args, ",") != m.Name() || len(rep.Env) != 0 {
		t.Fatalf("default run: args %q env %q", rep.Args, rep.Env)
	}
}

func TestReactorExitAndLimits(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "reactor"))
	res := runGuest(t, m, RunConfig{Dispatcher: NewMemDispatcher([]byte(`{"exit":75}`), nil)})
	wantOutcome(t, res, OutcomeGuestError)
	if res.ExitCode != 75 {
		t.Fatalf("exit code %d, want 75", res.ExitCode)
	}
	// A limit the declared memory fits but the initialized memory does not.
	snap, err := shared.snapshotFor(context.Background(), m, []string{m.Name()}, nil)
	if err != nil || snap == nil {
		t.Fatalf("snapshot: %v", err)
	}
	if snap.size <= m.MinMemory() {
		t.Fatalf("initialized memory %d is not above the declared %d", snap.size, m.MinMemory())
	}
	res = runGuest(t, m, RunConfig{MemoryLimit: snap.size - pageSize})
	wantOutcome(t, res, OutcomeMemoryLimit)
	wantContains(t, "error", res.Err.Error(), "initialized memory")
}

// A reactor whose initialization fails would fail every attempt: Compile
// refuses it, naming the failure.
func TestReactorInitFailureRefused(t *testing.T) {
	_, err := shared.Compile(context.Background(), reactorGuest(t, "badinit"))
	if !errors.Is(err, ErrInvalidModule) {
		t.Fatalf("Compile: %v, want ErrInvalidModule", err)
	}
	wantContains(t, "error", err.Error(), "initialization failed", "badinit: initializer failed")
}

// A reactor whose initialization calls the orloj_v1 host is not
// snapshotted (the call belongs to an attempt): each attempt initializes
// in its own instance, and the call is served by the attempt.
func TestReactorHostCallDuringInitFallsBack(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "hostinit"))
	if err := m.Preinitialized(); !errors.Is(err, errInitCallsHost) {
		t.Fatalf("Preinitialized: %v, want errInitCallsHost", err)
	}
	for _, ns := range []int64{111, 222} {
		d := NewMemDispatcher([]byte(`{}`), nil).SetClock(func() time.Time { return time.Unix(0, ns) })
		res := runGuest(t, m, RunConfig{Dispatcher: d})
		wantOutcome(t, res, OutcomeSuccess)
		var out struct {
			InitNow int64 `json:"init_now"`
		}
		if err := json.Unmarshal(d.TaskOutput(), &out); err != nil || out.InitNow != ns {
			t.Fatalf("output %s (%v), want init_now %d", d.TaskOutput(), err, ns)
		}
	}
}

// Attempts reuse memories of earlier ones (Linux keeps a pool per
// snapshot): one that scribbles over memory beyond the snapshot must leave
// nothing for the next, which the Go runtime assumes is zero when it grows,
// and a pooled memory must still hold each attempt to its own limit.
func TestReactorReusedMemoryIsClean(t *testing.T) {
	m := mustCompile(t, shared, reactorGuest(t, "reactor"))
	scribble := func(mib int, limit uint64) (reactorReport, Result) {
		d := NewMemDispatcher([]byte(fmt.Sprintf(`{"scribble":%d}`, mib)), nil)
		res := runGuest(t, m, RunConfig{Dispatcher: d, MemoryLimit: limit})
		var rep reactorReport
		if res.Outcome == OutcomeSuccess {
			if err := json.Unmarshal(d.TaskOutput(), &rep); err != nil {
				t.Fatalf("output %q: %v", d.TaskOutput(), err)
			}
		}
		return rep, res
	}
	for i := range 6 {
		mib := []int{1, 4, 16}[i%3] // 16 MiB: beyond what a pooled memory keeps
		rep, res := scribble(mib, 0)
		wantOutcome(t, res, OutcomeSuccess)
		if !rep.Zero || rep.Counter != 1 {
			t.Fatalf("attempt %d: fresh %d MiB all zero %v, counter %d; want true, 1", i, mib, rep.Zero, rep.Counter)
		}
	}
	snap, _ := shared.snapshotFor(context.Background(), m, []string{m.Name()}, nil)
	_, res := scribble(8, snap.size+(1<<20))
	wantOutcome(t, res, OutcomeMemoryLimit)
	rep, res := scribble(1, 0)
	wantOutcome(t, res, OutcomeSuccess)
	if !rep.Zero {
		t.Fatal("after a memory-limited attempt, fresh memory is not zero")
	}
}
