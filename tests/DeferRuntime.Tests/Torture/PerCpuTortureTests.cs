using DeferRuntime.Tests.Locking;
using DeferRuntime.Torture;
using DeferRuntime.Torture.Suites;

namespace DeferRuntime.Tests.Torture;

/// <summary>
/// The percpu suite: a short run passes with every counter exactly equal to its tally on every CPU; a
/// busted run (tasks update the hard-IRQ counter under preempt_disable only, with one hard IRQ forced
/// into each CPU's first such section) loses an update on every CPU and the checker says so; and the
/// checker's arithmetic on numbers made up for it.
/// </summary>
public class PerCpuTortureTests : ValidatedTest
{
    private const int FaultEvery = 7;

    [Fact]
    public void Percpu_suite_passes_with_exact_totals_on_every_cpu_and_datum()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.PerCpu, TimeSpan.FromMilliseconds(Stress.Scale(1_000, 10_000)), o => o.FaultEvery = FaultEvery));

        TortureTest.AssertPassed(report);
        var c = report.PerCpu!;
        Assert.Empty(report.Locks);
        Assert.Equal(2, c.Cpus);
        Assert.Equal(2, c.ThreadsPerCpu);   // 2x CPUs writers by default, spread evenly
        Assert.Equal(2, c.WorkItemsPerCpu); // a normal and a highpri kworker item per CPU
        Assert.False(c.Busted);
        Assert.Equal(["task", "bh", "irq"], c.Data.Select(d => d.Name));
        foreach (var d in c.Data)
        {
            Assert.Equal(d.TalliedPerCpu, d.CounterPerCpu); // exactly: no update lost on any CPU
            Assert.Equal(0, d.Lost);
            Assert.Equal(0, d.Overlaps);
            Assert.All(d.CounterPerCpu, n => Assert.True(n > 0));
            Assert.Equal(d.Tallied, d.Sites.Sum(s => s.Increments));
            Assert.All(d.Sites, s => Assert.True(s.Increments > 0, $"{d.Name}: {s.Context} under {s.Protection} never ran"));
        }
        Assert.Equal(["task"], c.Data[0].Sites.Select(s => s.Context).Distinct());
        Assert.Equal(["task", "softirq"], c.Data[1].Sites.Select(s => s.Context).Distinct());
        Assert.Equal(["task", "softirq", "hardirq"], c.Data[2].Sites.Select(s => s.Context).Distinct());
        Assert.Equal(c.IpisSent, c.IpiRuns);
        Assert.Equal(c.Data[2].Sites.Single(s => s.Context == "hardirq").Increments, c.IpiRuns);
        // Each tasklet, softirq, BH work and work item run calls the injector once.
        Assert.Equal((c.TaskletRuns + c.SoftirqRuns + c.BhWorkRuns + c.WorkItemRuns) / FaultEvery, c.Faults.Injected);
        Assert.Equal(c.Faults.Injected, c.Faults.Reported);
        string text = report.Render();
        Assert.Contains($"percpu-torture: irq (tasks, softirqs, hard IRQs): Counter: {c.Data[2].Counter}  Tallied: {c.Data[2].Tallied}  Lost: 0  Overlaps: 0", text, StringComparison.Ordinal);
        Assert.Contains("percpu-torture:--- End of test: SUCCESS: ncpus=2 nthreads_per_cpu=2 nworkitems_per_cpu=2", text, StringComparison.Ordinal);
        Assert.DoesNotContain("!!!", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Busted_percpu_run_loses_an_update_on_every_cpu_and_the_checker_reports_it()
    {
        var report = TortureRunner.Run(TortureTest.Options(TortureSuites.PerCpu, TimeSpan.FromMilliseconds(200), o => o.Busted = true));

        Assert.False(report.Passed);
        Assert.Equal(TortureLockTypes.LockBusted, Assert.Single(report.Locks).LockType); // Busted adds lock_busted too
        var c = report.PerCpu!;
        Assert.True(c.Busted);
        Assert.False(c.Passed);
        var irq = c.Data.Single(d => d.Name == "irq");
        for (int cpu = 0; cpu < c.Cpus; cpu++)
        {
            // The forced hard IRQ between a preempt-disabled task's read and write: one update lost, every run.
            Assert.True(irq.TalliedPerCpu[cpu] - irq.CounterPerCpu[cpu] >= 1, $"CPU {cpu}: counter {irq.CounterPerCpu[cpu]}, tallied {irq.TalliedPerCpu[cpu]}");
        }
        Assert.True(irq.Overlaps >= c.Cpus);
        Assert.Contains(irq.Sites, s => s.Protection.Contains("BUSTED", StringComparison.Ordinal) && s.Increments > 0);
        foreach (var d in c.Data.Where(d => d.Name != "irq"))
        {
            // The rule broken is the irq counter's: the others stay exact, so the checker points at the hole.
            Assert.Equal(d.TalliedPerCpu, d.CounterPerCpu);
            Assert.Equal(0, d.Overlaps);
        }
        var exact = Assert.Single(c.Checks, k => k.Name == "exact totals");
        Assert.False(exact.Passed);
        Assert.Contains("CPU 0 irq: counter", exact.Detail, StringComparison.Ordinal);
        Assert.Contains("CPU 1 irq: counter", exact.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("task:", exact.Detail, StringComparison.Ordinal);
        Assert.False(Assert.Single(c.Checks, k => k.Name == "no overlap").Passed);
        Assert.All(c.Checks.Where(k => k.Name is not ("exact totals" or "no overlap")), k => Assert.True(k.Passed, $"{k.Name}: {k.Detail}"));
        Assert.Contains(report.Failures, f => f.StartsWith("percpu: exact totals: CPU 0 irq:", StringComparison.Ordinal));

        string text = report.Render();
        Assert.Contains("percpu-torture: !!! exact totals:", text, StringComparison.Ordinal);
        Assert.Contains("percpu-torture:--- End of test: FAILURE", text, StringComparison.Ordinal);
        Assert.Contains("torture: End of run: FAILURE: lock_busted, percpu !!!", text, StringComparison.Ordinal);

        var back = TortureReport.FromJson(report.ToJson());
        Assert.Equal(report.ToJson(), back.ToJson());
        Assert.Equal(text, back.Render());
        Assert.Equal(irq.Lost, back.PerCpu!.Data[2].Lost);
    }

    [Fact]
    public void Checker_arithmetic_names_each_cpu_and_datum_that_lost_updates()
    {
        // Two updaters of CPU 0's irq counter inside at once: one overlap, both increments tallied.
        var books = new PerCpuBooks(2);
        books.Enter(0, PerCpuDatum.Irq);
        books.Enter(0, PerCpuDatum.Irq);
        books.Leave(0, PerCpuDatum.Irq, PerCpuSite.IrqHardirq);
        books.Leave(0, PerCpuDatum.Irq, PerCpuSite.IrqLocalIrqSave);
        books.Enter(1, PerCpuDatum.Task);
        books.Leave(1, PerCpuDatum.Task, PerCpuSite.TaskGetCpuVar);
        var irq = books.Stats(PerCpuDatum.Irq, [1, 0], busted: false); // the plain counter kept one of the two
        var task = books.Stats(PerCpuDatum.Task, [0, 1], busted: false);

        Assert.Equal([2L, 0L], irq.TalliedPerCpu);
        Assert.Equal(1, irq.Lost);
        Assert.Equal(1, irq.Overlaps);
        Assert.Equal(0, task.Lost);
        Assert.Equal(0, task.Overlaps);
        Assert.Equal(1, irq.Sites.Single(s => s.Context == "hardirq").Increments);
        Assert.DoesNotContain(irq.Sites, s => s.Protection.Contains("BUSTED", StringComparison.Ordinal));

        var failed = PerCpuBooks.ExactTotals([task, irq]);
        Assert.False(failed.Passed);
        Assert.Equal("CPU 0 irq: counter 1, tallied 2 (1 lost)", failed.Detail);
        var held = PerCpuBooks.ExactTotals([task]);
        Assert.True(held.Passed);
        Assert.Equal("per CPU and datum, counter = tallied increments: task 1", held.Detail);
        Assert.False(PerCpuBooks.NoOverlap([task, irq]).Passed);
        Assert.True(PerCpuBooks.NoOverlap([task]).Passed);

        // A counter above its tally (impossible with plain increments; memory corruption would do it) fails too.
        var excess = new PerCpuDatumStats { Name = "bh", SharedBy = "tasks, softirqs", CounterPerCpu = [3, 5], TalliedPerCpu = [3, 4] };
        Assert.Equal("CPU 1 bh: counter 5, tallied 4 (1 too many)", PerCpuBooks.ExactTotals([excess]).Detail);

        var coverage = books.Coverage();
        Assert.False(coverage.Passed);
        Assert.Contains("CPU 0 task from task", coverage.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("CPU 0 irq from hardirq", coverage.Detail, StringComparison.Ordinal);
    }
}
