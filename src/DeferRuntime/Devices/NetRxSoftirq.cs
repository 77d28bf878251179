using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using DeferRuntime.Cpus;
using DeferRuntime.Softirqs;

namespace DeferRuntime.Devices;

/// <summary>
/// NET_RX_SOFTIRQ and its per-CPU softnet_data (net/core/dev.c): the poll lists of scheduled NAPI
/// instances, net_rx_action() with the kernel's budgets, and /proc/net/softnet_stat.
/// </summary>
/// <remarks>
/// <para>What runs where: <see cref="NapiStruct.Schedule"/> (usually from a hard-IRQ handler on cpu/N)
/// pushes the instance on CPU N's inbox and raises NET_RX there. NET_RX runs on whichever thread of CPU N
/// holds its bh gate (cpu/N on irq exit, ksoftirqd/N, or a bound thread's local_bh_enable()). That holder
/// owns the CPU's poll list: it moves the inbox onto it and polls each instance in turn.</para>
/// <para>Why an inbox: the kernel guards sd->poll_list with local_irq_disable(). Here cpu/N's hard IRQ may
/// run on one OS thread while ksoftirqd/N polls on another, so producers push on a lock-free
/// multi-producer list (as tasklets do) and only the bh-gate holder touches the poll list itself.</para>
/// <para>Budgets (net_rx_action): each poll gets the instance's weight (64); one NET_RX run stops when
/// <see cref="NetdevBudget"/> (300) packets are spent or <see cref="NetdevBudgetUsecs"/> (2 ms) have passed,
/// counts a time_squeeze, and re-raises NET_RX for what is left — so a flood is spread over softirq
/// restarts and then ksoftirqd/N instead of starving the CPU. An instance whose poll used its whole weight
/// goes to the back of the list; one that completed leaves it.</para>
/// <para>NET_RX is opened on the first <see cref="NapiAdd"/>; an application that opened NET_RX with an
/// action of its own cannot use NAPI on the same runtime (a vector has one action).</para>
/// <para>Field legend of <see cref="Softnet"/>: <c>A:</c> any thread, lock-free; <c>B:</c> the CPU's bh-gate
/// holder only (readers on other threads use Volatile).</para>
/// </remarks>
public sealed class NetRxSoftirq
{
    private readonly Softnet[] _softnet; // I: per CPU
    private readonly Action _action; // I: net_rx_action, the delegate NET_RX is opened with
    private readonly Lock _lock = new();
    private readonly List<NapiStruct> _napis = []; // L: _lock
    private volatile bool _opened; // L to write: NET_RX opened with _action
    private volatile int _budget = 300; // netdev_budget
    private volatile int _budgetUsecs = 2000; // netdev_budget_usecs (2 ms, as with HZ=1000 jiffies)

    internal NetRxSoftirq(Runtime runtime)
    {
        Runtime = runtime;
        _softnet = new Softnet[runtime.Options.CpuCount];
        for (int i = 0; i < _softnet.Length; i++)
        {
            _softnet[i] = new Softnet();
        }
        _action = NetRxAction;
    }

    /// <summary>The runtime whose NET_RX this is.</summary>
    public Runtime Runtime { get; }

    /// <summary>netdev_budget: packets one NET_RX run may process over all instances before it yields (default 300).</summary>
    public int NetdevBudget
    {
        get => _budget;
        set => _budget = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "netdev_budget must be at least 1.");
    }

    /// <summary>netdev_budget_usecs: microseconds one NET_RX run may poll before it yields (default 2000).</summary>
    public int NetdevBudgetUsecs
    {
        get => _budgetUsecs;
        set => _budgetUsecs = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "netdev_budget_usecs must be at least 1.");
    }

    /// <summary>
    /// netif_napi_add_weight(): a NAPI instance that NET_RX polls with <paramref name="poll"/>, at most
    /// <paramref name="weight"/> packets per poll. It starts disabled, as in the kernel: call
    /// <see cref="NapiStruct.Enable"/> before scheduling it. The first call opens NET_RX with net_rx_action.
    /// </summary>
    /// <exception cref="InvalidOperationException">NET_RX was opened by the application with an action of its own.</exception>
    public NapiStruct NapiAdd(NapiPoll poll, string name, int weight = NapiStruct.DefaultWeight)
    {
        ArgumentNullException.ThrowIfNull(poll);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(weight, 1);
        Runtime.ThrowIfNotAccepting("netif_napi_add()");
        var napi = new NapiStruct(this, poll, name, weight);
        lock (_lock)
        {
            if (!_opened)
            {
                OpenNetRx();
            }
            _napis.Add(napi);
        }
        return napi;
    }

    private void OpenNetRx()
    {
        const string Refusal = "netif_napi_add(): NET_RX is already open with the application's own action (OpenSoftirq(SoftirqVector.NetRx, ...)); NAPI needs net_rx_action on that vector and a vector has exactly one action. Use NAPI or your own NET_RX action on a runtime, not both.";
        if (Runtime.Softirqs.Action((int)SoftirqVector.NetRx) is not null)
        {
            throw new InvalidOperationException(Refusal);
        }
        try
        {
            Runtime.Softirqs.Open(SoftirqVector.NetRx, _action);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(Refusal, e); // opened by the application between our check and ours
        }
        _opened = true;
    }

    internal void Remove(NapiStruct napi)
    {
        lock (_lock)
        {
            _napis.Remove(napi);
        }
    }

    /// <summary>The NAPI instances added and not deleted.</summary>
    public IReadOnlyList<NapiStruct> Instances
    {
        get
        {
            lock (_lock)
            {
                return _napis.ToArray();
            }
        }
    }

    // ---- queueing (____napi_schedule) ----

    /// <summary>
    /// Puts a napi whose Sched the caller just took on <paramref name="cpu"/>'s inbox and raises NET_RX
    /// there. <paramref name="local"/> is the caller's context when it is a thread of that CPU: in
    /// interrupt context (the top half, a softirq) the raise only marks NET_RX pending, as
    /// raise_softirq_irqoff() does, and irq exit or the running softirq loop picks it up.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Enqueue(VirtualCpu cpu, NapiStruct napi, ThreadContext? local)
    {
        IntrusiveMpsc.Push(ref _softnet[cpu.Id].Inbox.Head, napi);
        if (local is not null && local.InInterrupt)
        {
            cpu.OrSoftirqPending((int)SoftirqVector.NetRx);
        }
        else
        {
            cpu.RaiseAndKick((int)SoftirqVector.NetRx);
        }
    }

    /// <summary>__napi_schedule() of an instance whose Sched the caller holds (a completion that missed a schedule).</summary>
    internal void EnqueueFromAnyContext(NapiStruct napi)
    {
        var ctx = ThreadContext.Current;
        if (ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, Runtime))
        {
            Enqueue(ctx.Cpu, napi, ctx);
            return;
        }
        var cpu = Runtime.EnterForeign("napi_complete_done()");
        try
        {
            Enqueue(cpu, napi, local: null);
        }
        finally
        {
            cpu.ExitForeign();
        }
    }

    // ---- net_rx_action (the bh-gate holder of the CPU) ----

    /// <summary>
    /// net_rx_action(): poll the CPU's scheduled instances in order until the list is empty or the budget or
    /// time limit runs out; then put back, in this order, the instances not polled yet, those scheduled
    /// meanwhile, and those to poll again, and re-raise NET_RX if any remain.
    /// </summary>
    private void NetRxAction()
    {
        var ctx = ThreadContext.Current!;
        var cpu = ctx.Cpu;
        var sd = _softnet[cpu.Id];
        Debug.Assert(ReferenceEquals(cpu.BhGate.Owner, ctx), "net_rx_action without the CPU's bh gate");
        sd.Runs++;
        int budget = _budget;
        long timeLimit = Stopwatch.GetTimestamp() + _budgetUsecs * Stopwatch.Frequency / 1_000_000;
        sd.TakeInbox();
        var repoll = default(NapiList);

        while (true)
        {
            var napi = sd.PollList.PopFirst();
            if (napi is null)
            {
                // The list ran dry: take what was scheduled meanwhile, unless some instance waits for a
                // repoll, which the next run gives its turn (the kernel re-reads its poll list the same way).
                if (repoll.IsEmpty && sd.TakeInbox())
                {
                    continue;
                }
                break;
            }
            budget -= Poll(cpu, ctx, sd, napi, ref repoll);
            if (budget <= 0 || Stopwatch.GetTimestamp() - timeLimit >= 0)
            {
                // time_squeeze: out of budget or time with work left (the kernel counts both causes in one).
                sd.TimeSqueeze++;
                if (budget <= 0)
                {
                    sd.BudgetExhausted++;
                }
                else
                {
                    sd.TimeLimitHit++;
                }
                break;
            }
        }

        sd.TakeInbox();
        sd.PollList.Append(ref repoll);
        if (!sd.PollList.IsEmpty)
        {
            // __raise_softirq_irqoff(NET_RX): we hold the bh gate, so the holder's own pending word; the
            // running __do_softirq restarts for it, or hands it to ksoftirqd/N past its own budget.
            cpu.RaiseHolderLocal((int)SoftirqVector.NetRx);
            sd.Reraises++;
        }
    }

    /// <summary>
    /// __napi_poll(): one call of the poll function with the instance's weight, in softirq context. Returns the
    /// work to charge against the budget; puts the instance on <paramref name="repoll"/> when it is still
    /// ours and has more to do.
    /// </summary>
    private static int Poll(VirtualCpu cpu, ThreadContext ctx, Softnet sd, NapiStruct napi, ref NapiList repoll)
    {
        Debug.Assert(napi.IsScheduled, "an instance on a poll list always has NAPI_STATE_SCHED");
        int weight = napi.Weight;
        long releases = napi.Releases;
        napi.NotePoll();
        sd.Current = napi;
        sd.LastWork = 0;
        // PERF: the per-CPU softnet_data is the callback's state, so nothing is captured or allocated.
        var fault = cpu.RunCallback(ctx, sd, static s => s.LastWork = s.Current!.PollFunction(s.Current, s.Current.Weight), static s => $"napi poll '{s.Current!.Name}'");
        int work = sd.LastWork;
        sd.Current = null;
        if (fault is not null)
        {
            // The oops is reported; the device still has work as far as we know, so keep polling it
            // (treated as a full-weight poll) rather than leave it masked with no poll coming.
            work = weight;
        }
        else if ((uint)work > (uint)weight)
        {
            napi.WarnOnce($"napi poll '{napi.Name}' returned {work}, outside 0..{weight} (its weight): counted as {Math.Clamp(work, 0, weight)}");
            work = Math.Clamp(work, 0, weight);
        }
        sd.Polls++;
        sd.Processed += work;
        napi.NotePackets(work);

        if (napi.Releases != releases)
        {
            // Completed (or re-queued by a missed schedule) inside the poll: no longer ours. It may
            // already be polled on another CPU, so touch nothing else of it.
            return work;
        }
        if (napi.DisablePending)
        {
            // napi_disable() waits for Sched: give it up now rather than poll on.
            napi.CompleteForDisable();
            return work;
        }
        if (work < weight && fault is null)
        {
            // Less than the weight means done, and done means napi_complete_done(). Polling again is the
            // safe reading of a driver that forgot: the kernel would leave the instance stuck scheduled.
            napi.WarnOnce($"napi poll '{napi.Name}' returned {work} (< weight {weight}) without calling napi_complete_done(): it stays scheduled and is polled again");
        }
        else
        {
            napi.NoteFullWeightPoll();
        }
        sd.Repolls++;
        repoll.Append(napi);
        return work;
    }

    // ---- reporting ----

    /// <summary>One CPU's NET_RX counts (a line of /proc/net/softnet_stat, and more).</summary>
    public SoftnetStats GetSoftnetStats(int cpu)
    {
        if ((uint)cpu >= (uint)_softnet.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"CPU {cpu} does not exist; this runtime has CPUs 0 to {_softnet.Length - 1}.");
        }
        var sd = _softnet[cpu];
        return new SoftnetStats(
            cpu, Volatile.Read(ref sd.Processed), Volatile.Read(ref sd.TimeSqueeze), Volatile.Read(ref sd.BudgetExhausted),
            Volatile.Read(ref sd.TimeLimitHit), Volatile.Read(ref sd.Runs), Volatile.Read(ref sd.Polls),
            Volatile.Read(ref sd.Repolls), Volatile.Read(ref sd.Reraises));
    }

    /// <summary>/proc/net/softnet_stat, in words: per CPU, packets processed, time_squeeze (and its two causes), NET_RX runs, polls, repolls and re-raises.</summary>
    public string RenderSoftnetStat()
    {
        var sb = new StringBuilder();
        sb.AppendLine("CPU   processed  time_squeeze  (budget  time)  net_rx_runs       polls     repolls   reraises");
        for (int cpu = 0; cpu < _softnet.Length; cpu++)
        {
            var s = GetSoftnetStats(cpu);
            sb.Append(CultureInfo.InvariantCulture,
                $"{cpu,3} {s.Processed,11} {s.TimeSqueeze,13} {s.BudgetExhausted,8} {s.TimeLimitHit,5} {s.NetRxRuns,12} {s.Polls,11} {s.Repolls,11} {s.Reraises,10}");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    /// <summary>The inbox head alone on its cache line: producers (hard IRQs, other threads) CAS it, the bh-gate holder swaps it.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 136)]
    internal struct PaddedInbox
    {
        [FieldOffset(64)] public NapiStruct? Head;
    }

    /// <summary>A FIFO of instances linked through their own node (no allocation); owned by one thread.</summary>
    internal struct NapiList
    {
        private NapiStruct? _head;
        private NapiStruct? _tail;

        public readonly bool IsEmpty => _head is null;

        public NapiStruct? PopFirst()
        {
            var napi = _head;
            if (napi is not null)
            {
                _head = napi.ListNext;
                napi.ListNext = null;
                if (_head is null)
                {
                    _tail = null;
                }
            }
            return napi;
        }

        public void Append(NapiStruct napi)
        {
            napi.ListNext = null;
            AppendChain(napi, napi);
        }

        /// <summary>Moves every instance of <paramref name="other"/> to the end of this list.</summary>
        public void Append(ref NapiList other)
        {
            if (other._head is not null)
            {
                AppendChain(other._head, other._tail!);
                other = default;
            }
        }

        /// <summary>Appends a FIFO chain (first to last, last's Next null).</summary>
        public void AppendChain(NapiStruct first, NapiStruct last)
        {
            if (_tail is null)
            {
                _head = first;
            }
            else
            {
                _tail.ListNext = first;
            }
            _tail = last;
        }
    }

    /// <summary>softnet_data: one CPU's NET_RX state.</summary>
    internal sealed class Softnet
    {
        public PaddedInbox Inbox; // A: instances scheduled on this CPU, newest first, not yet on the poll list
        public NapiList PollList; // B: the poll list proper, oldest first
        public NapiStruct? Current; // B: the instance being polled (the poll callback's state)
        public int LastWork; // B: what its poll returned
        public long Processed; // B
        public long TimeSqueeze; // B
        public long BudgetExhausted; // B
        public long TimeLimitHit; // B
        public long Runs; // B
        public long Polls; // B
        public long Repolls; // B
        public long Reraises; // B

        /// <summary>Moves the inbox, oldest first, to the end of the poll list. True if it held any.</summary>
        public bool TakeInbox()
        {
            var first = IntrusiveMpsc.TakeAllFifo(ref Inbox.Head);
            if (first is null)
            {
                return false;
            }
            var last = first;
            while (last.ListNext is { } next)
            {
                last = next;
            }
            PollList.AppendChain(first, last);
            return true;
        }
    }
}

/// <summary>One CPU's NET_RX counts.</summary>
/// <param name="Cpu">The CPU.</param>
/// <param name="Processed">Packets the polls on this CPU reported.</param>
/// <param name="TimeSqueeze">NET_RX runs that ended with work left, out of budget or time (softnet_stat's time_squeeze).</param>
/// <param name="BudgetExhausted">Of those, the ones that spent netdev_budget packets.</param>
/// <param name="TimeLimitHit">Of those, the ones that ran out of netdev_budget_usecs.</param>
/// <param name="NetRxRuns">net_rx_action runs.</param>
/// <param name="Polls">Poll function calls.</param>
/// <param name="Repolls">Polls after which the instance stayed on the list (whole weight used).</param>
/// <param name="Reraises">Runs that re-raised NET_RX for instances left on the list.</param>
public sealed record SoftnetStats(
    int Cpu, long Processed, long TimeSqueeze, long BudgetExhausted, long TimeLimitHit, long NetRxRuns, long Polls, long Repolls, long Reraises);
