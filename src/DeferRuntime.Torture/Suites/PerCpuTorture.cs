using System.Globalization;
using DeferRuntime.Cpus;
using DeferRuntime.Locking;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;
using DeferRuntime.Torture.Harness;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Torture.Suites;

/// <summary>
/// Per-CPU data torture: on every CPU, several tasks (application threads bound to the CPU, and work
/// items of two bound workqueues, so two kworkers of the CPU), its softirqs (a BLOCK softirq handler,
/// tasklets, BH work) and its hard IRQs (IPIs through pre-allocated call_single_data) all update three
/// per-CPU counters with plain, non-atomic read-modify-writes, each taking exactly the protection the
/// kernel's rules ask of its context for that counter, and nothing more. Checks that no update is lost:
/// per CPU and per counter, the value equals the increments tallied atomically beside it.
/// </summary>
/// <remarks>
/// <para>Who updates what, under which protection (the kernel's rules for data shared with interrupts):</para>
/// <list type="table">
/// <item><term>task</term><description>Tasks only. Tasks: get_cpu_var(); preempt_disable() +
/// per_cpu(var, smp_processor_id()); spin_lock() of a lock that only the updating task takes (the lock
/// excludes nobody: the preemption it disables is what protects the counter); local_irq_save().</description></item>
/// <item><term>bh</term><description>Tasks and softirqs. Tasks: local_bh_disable(); spin_lock_bh() of
/// their own lock; local_irq_save(). Softirq handler, tasklets, BH work: nothing (they are in softirq,
/// which runs one at a time per CPU and excludes the CPU's bh-disabled tasks).</description></item>
/// <item><term>irq</term><description>Tasks, softirqs and hard IRQs. Tasks: local_irq_save();
/// spin_lock_irqsave() of their own lock. Softirqs: local_irq_save(). IPI functions (hard-IRQ context):
/// nothing.</description></item>
/// </list>
/// <para>Each increment reads the counter, sometimes yields the OS core (Thread.Yield) or spins, and
/// writes the value read plus one: if anything else of the CPU got into the same counter meanwhile, one
/// of the two increments is lost, and the counter falls short of its tally for ever. So the check needs
/// no timing: under correct exclusion it holds exactly, and every hole that lets two sections overlap
/// while one of them yields shows up as a lost update. An in-section count per CPU and counter also
/// counts the overlaps directly.</para>
/// <para>The first operations of every task take each protection in turn and drive every context on
/// every CPU (an IPI to each CPU, both tasklets, the softirq, the BH work), so the coverage check never
/// depends on timing. Bound threads rotate across the CPUs together at each shuffle (each CPU keeps its
/// share); work items requeue themselves on the CPU of the current rotation after each batch.</para>
/// <para>With <see cref="TortureOptions.Busted"/>, tasks also update the irq counter under preempt_disable
/// only, which hard IRQs do not respect. The first such section on each CPU sends an IPI to its own CPU
/// between its read and its write and waits for it to run: one update is lost on every CPU, every run,
/// which proves the checker.</para>
/// </remarks>
internal sealed class PerCpuTorture : IStormTest<PerCpuTortureResult>
{
    private const int TaskletsPerCpu = 2; // one scheduled with tasklet_schedule, one with tasklet_hi_schedule
    private const int ProtectedKinds = 8; // the kinds of TaskOperation that follow the rules (the busted one is a ninth)
    private const int Batch = 64;         // operations per run of a work item before it requeues itself

    private readonly TortureRun _run;
    private readonly Runtime _runtime;
    private readonly LoadControl _control;
    private readonly PlacementLog _placement;
    private readonly FaultInjector _faults;
    private readonly PerCpuBooks _books;
    private readonly PerCpu<long> _task; // the data under test: plain increments only
    private readonly PerCpu<long> _bh;
    private readonly PerCpu<long> _irq;
    private readonly bool _busted;
    private readonly int _kinds;          // I: ProtectedKinds, plus the busted one with Busted; also the first round's length
    private readonly int _threadsPerCpu;
    private readonly Tasker[] _threads;
    private readonly Item[] _items;
    private readonly Workqueue _wq;
    private readonly Workqueue _wqHi;
    private readonly Workqueue _bhWq;
    private readonly WorkStruct[] _bhWork;         // per CPU
    private readonly Tasklet[] _tasklets;          // per CPU, TaskletsPerCpu each
    private readonly CallSingleData[] _forcing;    // per CPU: the busted run's forced IPI
    private readonly int[] _forced;                // A: per CPU, 1 once the forced overlap was made
    private readonly List<string> _lateProblems = []; // L: itself; found by load threads and work items
    private long _liveItems;                       // A: work items that will run again

    [ThreadStatic]
    private static TortureRandom t_rng;

    [ThreadStatic]
    private static bool t_rngSeeded;

    /// <summary>One task's own things: its lock (nobody else takes it), its call_single_data (one per target CPU) and its random stream.</summary>
    private sealed class Tasker
    {
        public required string Name;
        public required int Home;
        public required KernelSpinlock Lock;
        public required CallSingleData[] Ipis;
        public TortureRandom Rng;  // the owner's: a thread, or an item's runs, which never overlap
        public long Operations;    // the owner's
    }

    private sealed class Item
    {
        public required WorkStruct Work;
        public required Workqueue Wq;
        public required Tasker Tasker;
    }

    private PerCpuTorture(TortureRun run, Runtime runtime)
    {
        _run = run;
        _runtime = runtime;
        var o = run.Options;
        _control = new LoadControl(o.Stutter, o.ShuffleInterval);
        _placement = new PlacementLog(runtime.Options.Pinning);
        _faults = new FaultInjector(o.FaultEvery, runtime.Faults);
        int cpus = runtime.Cpus.Count;
        _books = new PerCpuBooks(cpus);
        _task = new PerCpu<long>(runtime);
        _bh = new PerCpu<long>(runtime);
        _irq = new PerCpu<long>(runtime);
        _busted = o.Busted;
        _kinds = ProtectedKinds + (_busted ? 1 : 0);
        _threadsPerCpu = Math.Max(2, ((o.Writers ?? 2 * cpus) + cpus - 1) / cpus);
        _forced = new int[cpus];

        var ipi = new Action<object?>(IpiFunction);
        _threads = new Tasker[_threadsPerCpu * cpus];
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = NewTasker($"percpu_torture/{i}", home: i % cpus, stream: 8000 + i, ipi);
        }
        _forcing = [.. Enumerable.Range(0, cpus).Select(_ => new CallSingleData(ipi))];

        _wq = runtime.AllocWorkqueue("percpu_torture");
        _wqHi = runtime.AllocWorkqueue("percpu_torture_hi", WorkqueueFlags.HighPri);
        _bhWq = runtime.AllocWorkqueue("percpu_torture_bh", WorkqueueFlags.Bh);
        var items = new List<Item>();
        foreach (var wq in new[] { _wq, _wqHi })
        {
            for (int cpu = 0; cpu < cpus; cpu++)
            {
                Item? it = null;
                var t = NewTasker($"{wq.Name}/{cpu}", cpu, 8500 + items.Count, ipi);
                it = new Item { Work = new WorkStruct(_ => WorkFunction(it!), t.Name), Wq = wq, Tasker = t };
                items.Add(it);
            }
        }
        _items = [.. items];
        _bhWork = [.. Enumerable.Range(0, cpus).Select(cpu => new WorkStruct(_ => BhWorkFunction(), $"percpu_torture_bh/{cpu}"))];
        _tasklets = new Tasklet[cpus * TaskletsPerCpu];
        for (int i = 0; i < _tasklets.Length; i++)
        {
            _tasklets[i] = runtime.CreateTasklet(_ => TaskletCallback(), $"percpu_torture/{i / TaskletsPerCpu}.{i % TaskletsPerCpu}");
        }
        // Each test boots its own runtime, so BLOCK is free here (the shutdown suite opens it on its own).
        runtime.OpenSoftirq(SoftirqVector.Block, SoftirqHandler);
    }

    private Tasker NewTasker(string name, int home, int stream, Action<object?> ipi) => new()
    {
        Name = name,
        Home = home,
        Lock = new KernelSpinlock("percpu_torture.own"),
        Ipis = [.. Enumerable.Range(0, _runtime.Cpus.Count).Select(_ => new CallSingleData(ipi))],
        Rng = new TortureRandom(_run.Seed, stream),
    };

    public static PerCpuTortureResult Run(TortureRun run) => SuiteSupport.Run(run, static (r, runtime) => new PerCpuTorture(r, runtime));

    public FaultInjector Faults => _faults;

    public void Dispose()
    {
        _control.Dispose();
        foreach (var t in _threads.Concat(_items.Select(i => i.Tasker)))
        {
            t.Lock.Dispose();
        }
    }

    public TimeSpan Torture(List<string> problems)
    {
        foreach (var it in _items)
        {
            Interlocked.Increment(ref _liveItems);
            it.Wq.QueueOn(it.Tasker.Home, it.Work);
        }
        var threads = new LoadThreads();
        foreach (var t in _threads)
        {
            threads.Start(t.Name, () => BoundThread(t));
        }
        _control.Start();
        var ran = _run.RunLoad(TortureRunner.PerCpuTest, () => string.Create(CultureInfo.InvariantCulture,
            $"Increments: task {Increments(PerCpuDatum.Task)}  bh {Increments(PerCpuDatum.Bh)}  irq {Increments(PerCpuDatum.Irq)}  IPIs: {_books.Events(PerCpuEvent.IpiSent)}"));
        _control.Stop();
        problems.AddRange(threads.Join(TortureRun.Ceiling));
        if (threads.AnyAlive)
        {
            return ran;
        }

        // Quiesce in dependency order, each wait bounded only to catch a hang: the work items stop
        // requeueing; then no IPI is in flight (IPI functions schedule tasklets and raise the softirq);
        // then no tasklet is scheduled or running; BH work is queued by tasks only.
        if (!SuiteSupport.WaitUntil(() => Interlocked.Read(ref _liveItems) == 0))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"work items: {Interlocked.Read(ref _liveItems)} still requeueing {TortureRun.Ceiling.TotalSeconds:0} s after the stop"));
            return ran;
        }
        var csds = _threads.Concat(_items.Select(i => i.Tasker)).SelectMany(t => t.Ipis).Concat(_forcing).ToArray();
        if (!SuiteSupport.WaitUntil(() => csds.All(c => !c.IsBusy)))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"IPIs: {csds.Count(c => c.IsBusy)} call_single_data still in flight after {TortureRun.Ceiling.TotalSeconds:0} s"));
        }
        if (!SuiteSupport.WaitUntil(() => _tasklets.All(t => !t.IsScheduled && !t.IsRunning)))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"tasklets: {_tasklets.Count(t => t.IsScheduled || t.IsRunning)} still scheduled or running after {TortureRun.Ceiling.TotalSeconds:0} s"));
        }
        foreach (var wq in new[] { _wq, _wqHi, _bhWq })
        {
            wq.Destroy(); // drains: what is left is at most the last run of each item
        }
        foreach (var t in _tasklets)
        {
            t.Kill();
        }
        lock (_lateProblems)
        {
            problems.AddRange(_lateProblems);
        }
        return ran;
    }

    private long Increments(PerCpuDatum datum)
    {
        long sum = 0;
        for (int cpu = 0; cpu < _books.Cpus; cpu++)
        {
            sum += _books.Tallied(cpu, datum);
        }
        return sum;
    }

    /// <summary>An application thread bound to a CPU (kthread_bind): operations until the stop, moving with each rotation.</summary>
    private void BoundThread(Tasker t)
    {
        using var place = new CpuPlacer(_runtime, _control, _placement, bind: true, firstCpu: t.Home);
        do
        {
            if (t.Operations >= _kinds)
            {
                place.MaybeRotate(t.Home);
            }
            TaskOperation(t);
            _control.StutterWait();
        }
        while (t.Operations < _kinds || !_control.StopRequested);
    }

    /// <summary>A work item on a kworker of its CPU: a batch of operations, then queue_work_on() itself on the CPU of the current rotation.</summary>
    private void WorkFunction(Item it)
    {
        var t = it.Tasker;
        _books.Count(CpuContext.CurrentCpuId, PerCpuEvent.WorkRun);
        for (int i = 0; i < Batch && (t.Operations < _kinds || !_control.StopRequested); i++)
        {
            TaskOperation(t);
            _control.StutterWait();
        }
        if (_control.StopRequested)
        {
            Interlocked.Decrement(ref _liveItems);
        }
        else
        {
            it.Wq.QueueOn((int)(((uint)t.Home + (uint)_control.Epoch) % (uint)_books.Cpus), it.Work);
        }
        _faults.MaybeThrow($"work item '{it.Work.Name}'");
    }

    /// <summary>
    /// One operation of a task of this CPU: an increment under one protection (the first operations take
    /// each in turn, then at random), then now and then an IPI, a tasklet, a raise or BH work.
    /// </summary>
    private void TaskOperation(Tasker t)
    {
        long op = t.Operations++;
        ref var rng = ref t.Rng;
        int cpu;
        switch (op < _kinds ? (int)op : rng.Next(_kinds))
        {
            case 0:
                using (var v = _task.GetCpuVar())
                {
                    Increment(ref v.Value, v.Cpu, PerCpuDatum.Task, PerCpuSite.TaskGetCpuVar, ref rng);
                }
                break;
            case 1:
                CpuContext.PreemptDisable();
                try
                {
                    cpu = CpuContext.CurrentCpuId;
                    Increment(ref _task.For(cpu), cpu, PerCpuDatum.Task, PerCpuSite.TaskPreemptDisable, ref rng);
                }
                finally
                {
                    CpuContext.PreemptEnable();
                }
                break;
            case 2:
                using (t.Lock.Enter())
                {
                    Increment(_task, PerCpuDatum.Task, PerCpuSite.TaskSpinLock, ref rng);
                }
                break;
            case 3:
                using (CpuContext.LocalBhDisable())
                {
                    Increment(_bh, PerCpuDatum.Bh, PerCpuSite.BhLocalBhDisable, ref rng);
                    SoftirqsFromBhSection(ref rng); // they run at the enable below, on this thread
                }
                break;
            case 4:
                using (t.Lock.EnterBh())
                {
                    Increment(_bh, PerCpuDatum.Bh, PerCpuSite.BhSpinLockBh, ref rng);
                    SoftirqsFromBhSection(ref rng);
                }
                break;
            case 5:
                using (CpuContext.LocalIrqSave())
                {
                    Increment(_irq, PerCpuDatum.Irq, PerCpuSite.IrqLocalIrqSave, ref rng);
                }
                break;
            case 6:
                using (t.Lock.EnterIrqSave())
                {
                    Increment(_irq, PerCpuDatum.Irq, PerCpuSite.IrqSpinLockIrqSave, ref rng);
                }
                break;
            case 7:
                // Interrupts off keep everything else of the CPU out: its other tasks, softirqs and hard IRQs.
                using (CpuContext.LocalIrqSave())
                {
                    Increment(_task, PerCpuDatum.Task, PerCpuSite.TaskIrqSaveAll, ref rng);
                    Increment(_bh, PerCpuDatum.Bh, PerCpuSite.BhIrqSaveAll, ref rng);
                    Increment(_irq, PerCpuDatum.Irq, PerCpuSite.IrqIrqSaveAll, ref rng);
                }
                break;
            default:
                BustedIncrement(ref rng);
                break;
        }

        cpu = CpuContext.CurrentCpuId;
        if (op == 0)
        {
            // The first operation drives every context once: an IPI to each CPU, and this CPU's tasklets,
            // softirq and BH work. Each call_single_data is this task's own and idle, so every IPI is sent.
            for (int target = 0; target < _books.Cpus; target++)
            {
                SendIpi(t, target);
            }
            for (int k = 0; k < TaskletsPerCpu; k++)
            {
                ScheduleTasklet(cpu, k);
            }
            RaiseSoftirq(cpu, irqsOff: false);
            QueueBhWork(cpu);
            return;
        }
        if (rng.OneIn(4))
        {
            SendIpi(t, rng.Next(_books.Cpus));
        }
        if (rng.OneIn(16))
        {
            ScheduleTasklet(cpu, rng.Next(TaskletsPerCpu));
        }
        if (rng.OneIn(16))
        {
            RaiseSoftirq(cpu, irqsOff: false);
        }
        if (rng.OneIn(32))
        {
            QueueBhWork(cpu);
        }
    }

    /// <summary>From a bh-disabled section: what is scheduled or raised here runs at the section's local_bh_enable(), on this task's thread.</summary>
    private void SoftirqsFromBhSection(ref TortureRandom rng)
    {
        int cpu = CpuContext.CurrentCpuId;
        if (rng.OneIn(8))
        {
            ScheduleTasklet(cpu, rng.Next(TaskletsPerCpu));
        }
        if (rng.OneIn(8))
        {
            RaiseSoftirq(cpu, irqsOff: false);
        }
    }

    /// <summary>
    /// The broken rule (Busted): the irq counter under preempt_disable only. The first such section on each
    /// CPU makes the hard IRQ it does not keep out happen between its read and its write.
    /// </summary>
    private void BustedIncrement(ref TortureRandom rng)
    {
        using var v = _irq.GetCpuVar();
        int cpu = v.Cpu;
        _books.Enter(cpu, PerCpuDatum.Irq);
        long value = v.Value;
        if (Interlocked.CompareExchange(ref _forced[cpu], 1, 0) == 0)
        {
            ForceHardirq(cpu);
        }
        else
        {
            Widen(ref rng);
        }
        v.Value = value + 1;
        _books.Leave(cpu, PerCpuDatum.Irq, PerCpuSite.IrqBustedPreempt);
    }

    /// <summary>An IPI to our own CPU, waited for: hard IRQs still run while a task has only preemption disabled.</summary>
    private void ForceHardirq(int cpu)
    {
        var csd = _forcing[cpu];
        if (!_runtime.SmpCallFunctionSingleAsync(cpu, csd))
        {
            AddLateProblem($"busted: the forcing call_single_data of CPU {cpu} was busy");
            return;
        }
        _books.Count(cpu, PerCpuEvent.IpiSent);
        if (!SuiteSupport.WaitUntil(() => !csd.IsBusy))
        {
            AddLateProblem(string.Create(CultureInfo.InvariantCulture,
                $"busted: the IPI to CPU {cpu} did not run within {TortureRun.Ceiling.TotalSeconds:0} s while a task of the CPU had only preemption disabled"));
        }
    }

    private void SendIpi(Tasker t, int target)
    {
        bool sent = _runtime.SmpCallFunctionSingleAsync(target, t.Ipis[target]);
        _books.Count(target, sent ? PerCpuEvent.IpiSent : PerCpuEvent.IpiBusy);
    }

    private void ScheduleTasklet(int cpu, int k)
    {
        var tasklet = _tasklets[(cpu * TaskletsPerCpu) + k];
        if (k == 0)
        {
            tasklet.Schedule();
        }
        else
        {
            tasklet.HiSchedule();
        }
        _books.Count(cpu, PerCpuEvent.TaskletSchedule);
    }

    private void RaiseSoftirq(int cpu, bool irqsOff)
    {
        if (irqsOff)
        {
            _runtime.RaiseSoftirqIrqOff(SoftirqVector.Block);
        }
        else
        {
            _runtime.RaiseSoftirq(SoftirqVector.Block);
        }
        _books.Count(cpu, PerCpuEvent.SoftirqRaise);
    }

    private void QueueBhWork(int cpu)
    {
        if (_bhWq.QueueOn(cpu, _bhWork[cpu]))
        {
            _books.Count(cpu, PerCpuEvent.BhWorkQueued);
        }
    }

    /// <summary>An IPI function, in hard-IRQ context on its CPU: the irq counter with no protection; now and then a tasklet or a raise, which run at irq exit.</summary>
    private void IpiFunction(object? info)
    {
        int cpu = CpuContext.CurrentCpuId;
        ref var rng = ref Rng();
        _books.Count(cpu, PerCpuEvent.IpiRun);
        Increment(_irq, PerCpuDatum.Irq, PerCpuSite.IrqHardirq, ref rng);
        if (rng.OneIn(4))
        {
            ScheduleTasklet(cpu, rng.Next(TaskletsPerCpu));
        }
        if (rng.OneIn(4))
        {
            RaiseSoftirq(cpu, irqsOff: true);
        }
    }

    private void SoftirqHandler()
    {
        _books.Count(CpuContext.CurrentCpuId, PerCpuEvent.SoftirqRun);
        InSoftirq(PerCpuSite.BhSoftirq);
        _faults.MaybeThrow("softirq BLOCK");
    }

    private void TaskletCallback()
    {
        _books.Count(CpuContext.CurrentCpuId, PerCpuEvent.TaskletRun);
        InSoftirq(PerCpuSite.BhTasklet);
        _faults.MaybeThrow("tasklet");
    }

    private void BhWorkFunction()
    {
        _books.Count(CpuContext.CurrentCpuId, PerCpuEvent.BhWorkRun);
        InSoftirq(PerCpuSite.BhWork);
        _faults.MaybeThrow("BH work");
    }

    /// <summary>A softirq's updates: the bh counter as it is (softirq context), the irq counter with interrupts off.</summary>
    private void InSoftirq(PerCpuSite bhSite)
    {
        ref var rng = ref Rng();
        Increment(_bh, PerCpuDatum.Bh, bhSite, ref rng);
        using (CpuContext.LocalIrqSave())
        {
            Increment(_irq, PerCpuDatum.Irq, PerCpuSite.IrqSoftirqIrqSave, ref rng);
        }
    }

    /// <summary>this_cpu_ptr(): the calling context's slot; the caller holds the protection the datum needs.</summary>
    private void Increment(PerCpu<long> datum, PerCpuDatum which, PerCpuSite site, ref TortureRandom rng)
    {
        int cpu = CpuContext.CurrentCpuId;
        Increment(ref datum.ThisCpu, cpu, which, site, ref rng);
    }

    /// <summary>
    /// The plain read-modify-write under test, between the books' entry and exit: read, perhaps let the
    /// core go, write back plus one. Anything of the same CPU that gets into the counter meanwhile makes
    /// one of the two increments lost.
    /// </summary>
    private void Increment(ref long slot, int cpu, PerCpuDatum which, PerCpuSite site, ref TortureRandom rng)
    {
        _books.Enter(cpu, which);
        long value = slot;
        Widen(ref rng);
        slot = value + 1;
        _books.Leave(cpu, which, site);
    }

    /// <summary>Widens the window between read and write: one time in eight the OS may run another thread on this core now (the rules must keep the CPU's others out anyway), one in eight a short spin.</summary>
    private static void Widen(ref TortureRandom rng)
    {
        switch (rng.Next(8))
        {
            case 0:
                Thread.Yield();
                break;
            case 1:
                Thread.SpinWait(1 + rng.Next(64));
                break;
        }
    }

    private ref TortureRandom Rng()
    {
        if (!t_rngSeeded)
        {
            t_rng = new TortureRandom(_run.Seed, 9000 + Environment.CurrentManagedThreadId);
            t_rngSeeded = true;
        }
        return ref t_rng;
    }

    private void AddLateProblem(string problem)
    {
        lock (_lateProblems)
        {
            _lateProblems.Add(problem);
        }
    }

    public PerCpuTortureResult Result(TimeSpan ran, List<string> problems)
    {
        int cpus = _books.Cpus;
        long[] Values(PerCpu<long> datum) => [.. Enumerable.Range(0, cpus).Select(cpu => Volatile.Read(ref datum.For(cpu)))];
        PerCpuDatumStats[] data =
        [
            _books.Stats(PerCpuDatum.Task, Values(_task), _busted),
            _books.Stats(PerCpuDatum.Bh, Values(_bh), _busted),
            _books.Stats(PerCpuDatum.Irq, Values(_irq), _busted),
        ];
        long sent = _books.Events(PerCpuEvent.IpiSent), runs = _books.Events(PerCpuEvent.IpiRun);
        var faults = _faults.Account();
        var checks = new List<TortureCheck>
        {
            PerCpuBooks.ExactTotals(data),
            PerCpuBooks.NoOverlap(data),
            _books.Coverage(),
            new("IPIs", sent == runs, string.Create(CultureInfo.InvariantCulture,
                $"sent {sent} = ran {runs} ({_books.Events(PerCpuEvent.IpiBusy)} not sent: the sender's call_single_data was still in flight)")),
            new("threads", problems.Count == 0, problems.Count == 0
                ? string.Create(CultureInfo.InvariantCulture, $"{_threads.Length} bound threads and {_items.Length} work items started and stopped cleanly")
                : string.Join("; ", problems)),
            faults.Check(),
        };
        return new PerCpuTortureResult
        {
            Cpus = cpus,
            ThreadsPerCpu = _threadsPerCpu,
            WorkItemsPerCpu = _items.Length / cpus,
            Busted = _busted,
            DurationSeconds = ran.TotalSeconds,
            Data = data,
            IpisSent = sent,
            IpisBusy = _books.Events(PerCpuEvent.IpiBusy),
            IpiRuns = runs,
            TaskletSchedules = _books.Events(PerCpuEvent.TaskletSchedule),
            TaskletRuns = _books.Events(PerCpuEvent.TaskletRun),
            SoftirqRaises = _books.Events(PerCpuEvent.SoftirqRaise),
            SoftirqRuns = _books.Events(PerCpuEvent.SoftirqRun),
            BhWorkQueued = _books.Events(PerCpuEvent.BhWorkQueued),
            BhWorkRuns = _books.Events(PerCpuEvent.BhWorkRun),
            WorkItemRuns = _books.Events(PerCpuEvent.WorkRun),
            Stutters = _control.Stutters,
            Shuffles = _placement.Moves,
            Placement = _placement.Describe(),
            Faults = faults,
            Checks = checks,
        };
    }
}
