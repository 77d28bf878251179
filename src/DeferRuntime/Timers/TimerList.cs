using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;
using DeferRuntime.Diagnostics;

namespace DeferRuntime.Timers;

/// <summary>
/// struct timer_list: a timer of the per-CPU timer wheel. Its callback runs once, in TIMER_SOFTIRQ on the
/// CPU whose wheel it is queued on, at or after <see cref="Expires"/> (in jiffies). Create one with
/// <see cref="Runtime.TimerSetup"/>; arming, re-arming and deleting an existing timer allocate nothing.
/// </summary>
/// <remarks>
/// <para>Where it runs: arming files the timer on the wheel of the calling thread's CPU (a handler,
/// softirq, tasklet or bound task), or, from a thread of no CPU, of the CPU that
/// <see cref="RuntimeOptions.ForeignPlacement"/> picks; <see cref="AddTimerOn"/> names the CPU. A timer
/// whose callback is running stays on the wheel where it runs when re-armed, so its callback never runs
/// on two CPUs at once and <see cref="DelTimerSync"/> knows where to wait.</para>
/// <para>Accuracy: never before <see cref="Expires"/>; late by at most about 1/7 of the timeout (exact
/// within 63 jiffies), plus delivery (see <see cref="TimerBase"/>).</para>
/// <para>Field legend: <c>I:</c> set at setup; <c>L:</c> the lock of the base the timer belongs to;
/// <c>A:</c> any thread, Volatile/Interlocked.</para>
/// </remarks>
public sealed class TimerList
{
    private readonly Action<TimerList> _callback; // I

    // A: the base the timer belongs to; null while it migrates between two bases (the kernel's
    // TIMER_MIGRATING): the migrating thread holds neither lock then, and lockers wait for the new one.
    private TimerBase? _base;

    private bool _shutdown; // L: timer_shutdown_sync() ran: later arms are ignored (the kernel's function = NULL)

    internal TimerList? Next, Prev; // L: bucket list links (see TimerBase)
    internal int Slot = -1; // L, read lock-free: wheel slot, or -1 when not queued (timer_pending)
    internal long ExpiresValue; // L, read lock-free
    internal TimerBase? RunningOn; // A: the base whose softirq runs the callback right now, or null
    internal int SyncWaiters; // A: threads waiting in DelTimerSync/TimerShutdownSync for the callback (the kernel's timer_waiters)

    internal TimerList(Runtime runtime, Action<TimerList> callback, TimerFlags flags, string? name)
    {
        Runtime = runtime;
        _callback = callback;
        Flags = flags;
        Name = name ?? CallbackName.Of(callback);
        // Like timer_setup(), which records the CPU it ran on: a base to lock before the first arm.
        var cpu = CpuContext.CurrentCpu is { } own && ReferenceEquals(own.Runtime, runtime) ? own : runtime.Cpus[0];
        _base = cpu.Timers.BaseFor(flags);
    }

    /// <summary>The runtime whose CPUs run this timer.</summary>
    public Runtime Runtime { get; }

    /// <summary>A name for fault records and reports.</summary>
    public string Name { get; }

    /// <summary>The TIMER_* flags it was set up with (<see cref="AddTimerOn"/> adds <see cref="TimerFlags.Pinned"/>).</summary>
    public TimerFlags Flags { get; private set; }

    /// <summary>
    /// timer-&gt;expires: the jiffy at or after which the callback runs. Set it before <see cref="AddTimer"/>;
    /// a queued timer's expiry is changed with <see cref="ModTimer"/> only.
    /// </summary>
    public long Expires
    {
        get => Volatile.Read(ref ExpiresValue);
        set
        {
            if (TimerPending)
            {
                throw new InvalidOperationException($"timer '{Name}': setting expires of a pending timer; use ModTimer(), which re-files it under the wheel's lock.");
            }
            Volatile.Write(ref ExpiresValue, value);
        }
    }

    /// <summary>timer_pending(): queued on a wheel and not yet started. Lock-free, so only a snapshot.</summary>
    public bool TimerPending => Volatile.Read(ref Slot) >= 0;

    /// <summary>The CPU whose wheel the timer is on (or was last on).</summary>
    public int Cpu => (Volatile.Read(ref _base) ?? LockBaseAndRead()).Cpu.Id;

    /// <summary>
    /// mod_timer(): (re)arms the timer for jiffy <paramref name="expires"/> on the calling thread's CPU.
    /// Returns true if it was pending (the earlier expiry is replaced), false if it was inactive. Ignored
    /// (returns false) after <see cref="TimerShutdownSync"/>. Allocation-free.
    /// </summary>
    public bool ModTimer(long expires)
    {
        // The kernel's shortcut: re-arming a pending timer for the expiry it already has changes nothing.
        if (Volatile.Read(ref Slot) >= 0 && Volatile.Read(ref ExpiresValue) == expires)
        {
            return true;
        }
        return Arm(expires, cpu: -1, ArmMode.Modify, "mod_timer()");
    }

    /// <summary>add_timer(): arms an inactive timer for <see cref="Expires"/> on the calling thread's CPU. Arming a pending timer throws: use <see cref="ModTimer"/>.</summary>
    public void AddTimer() => Arm(Volatile.Read(ref ExpiresValue), cpu: -1, ArmMode.Add, "add_timer()");

    /// <summary>
    /// add_timer_on(): arms an inactive timer for <see cref="Expires"/> on CPU <paramref name="cpu"/> and
    /// marks it <see cref="TimerFlags.Pinned"/>. Arming a pending timer throws.
    /// </summary>
    public void AddTimerOn(int cpu)
    {
        if (cpu < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), cpu, $"add_timer_on(): CPU {cpu} does not exist.");
        }
        Arm(Volatile.Read(ref ExpiresValue), cpu, ArmMode.AddOn, "add_timer_on()");
    }

    /// <summary>
    /// timer_delete() (del_timer()): deactivates the timer. Returns true if it was pending. Does not wait
    /// for a running callback (which may re-arm it): see <see cref="DelTimerSync"/>. Any context.
    /// </summary>
    public bool DelTimer()
    {
        if (!TimerPending)
        {
            return false;
        }
        var timerBase = LockBase();
        try
        {
            return timerBase.DetachIfPending(this);
        }
        finally
        {
            timerBase.BaseLock.Exit();
        }
    }

    /// <summary>
    /// timer_delete_sync() (del_timer_sync()): deactivates the timer and waits for a running callback to
    /// finish; a callback that re-arms the timer meanwhile is deleted again. Returns true if the timer was
    /// pending at the last attempt. Waits, so it is refused in atomic context (hard IRQ, softirq, bh or
    /// irqs disabled, a spinlock held) and from the timer's own callback, which would wait for itself.
    /// </summary>
    public bool DelTimerSync()
    {
        CheckMayWait("timer_delete_sync()");
        return DeleteSync(shutdown: false, "timer_delete_sync()");
    }

    /// <summary>
    /// timer_shutdown_sync(): as <see cref="DelTimerSync"/>, and the timer can never be armed again:
    /// later <see cref="ModTimer"/>, <see cref="AddTimer"/> and <see cref="AddTimerOn"/> calls (its own
    /// callback's included) are silently ignored. For teardown, where a re-arm would race with freeing.
    /// </summary>
    public void TimerShutdownSync()
    {
        CheckMayWait("timer_shutdown_sync()");
        DeleteSync(shutdown: true, "timer_shutdown_sync()");
    }

    /// <summary>True once <see cref="TimerShutdownSync"/> has run.</summary>
    public bool IsShutDown => Volatile.Read(ref _shutdown);

    internal void Invoke() => _callback(this);

    private enum ArmMode
    {
        Modify, // mod_timer(): pending or not
        Add, // add_timer(): must not be pending
        AddOn, // add_timer_on(): must not be pending; goes to the named CPU even off a running base
    }

    private bool Arm(long expires, int cpu, ArmMode mode, string caller)
    {
        var target = Runtime.TimerTarget(cpu, caller, out var foreign);
        try
        {
            return ArmOn(target, expires, mode, caller);
        }
        finally
        {
            foreign?.ExitForeign();
        }
    }

    /// <summary>__mod_timer() / add_timer_on(): detach, migrate if needed, file, reprogram.</summary>
    private bool ArmOn(VirtualCpu target, long expires, ArmMode mode, string caller)
    {
        var newBase = target.Timers.BaseFor(Flags);
        var timerBase = LockBase();
        bool wasPending;
        long bucketTime;
        try
        {
            if (_shutdown)
            {
                return false;
            }
            wasPending = Slot >= 0;
            if (wasPending && mode != ArmMode.Modify)
            {
                ThrowPending(caller);
            }
            if (wasPending)
            {
                timerBase.DetachIfPending(this);
            }
            if (!ReferenceEquals(timerBase, newBase) && (mode == ArmMode.AddOn || Volatile.Read(ref RunningOn) is null))
            {
                // A running callback keeps the timer where it runs (except add_timer_on(), as in the
                // kernel; expiry then defers it while the callback still runs elsewhere).
                timerBase = BaseLocking.Migrate(ref _base, timerBase, newBase);
            }
            if (mode == ArmMode.AddOn)
            {
                Flags |= TimerFlags.Pinned;
            }
            Volatile.Write(ref ExpiresValue, expires);
            bucketTime = timerBase.Enqueue(this, expires, Runtime.Jiffies);
        }
        finally
        {
            timerBase.BaseLock.Exit();
        }
        // Outside the lock: may kick the CPU if this is now its earliest event.
        timerBase.Cpu.Timers.Program(Runtime.JiffyStartNs(bucketTime), timerBase.IsDeferrable);
        return wasPending;
    }

    /// <summary>timer_delete_sync()'s loop: delete unless running; while running, wait and retry.</summary>
    private bool DeleteSync(bool shutdown, string caller)
    {
        var backoff = default(Backoff);
        bool waiting = false;
        try
        {
            while (true)
            {
                if (TryDelete(shutdown, out bool removed))
                {
                    return removed;
                }
                if (!waiting)
                {
                    waiting = true;
                    Interlocked.Increment(ref SyncWaiters);
                }
                Runtime.ThrowIfDead(caller);
                backoff.Wait();
            }
        }
        finally
        {
            if (waiting)
            {
                Interlocked.Decrement(ref SyncWaiters);
            }
        }
    }

    /// <summary>__try_to_del_timer_sync(): false (nothing changed) while the callback runs.</summary>
    private bool TryDelete(bool shutdown, out bool removed)
    {
        var timerBase = LockBase();
        try
        {
            if (shutdown)
            {
                // Under the lock, before the callback finishes: its own re-arm is then ignored too.
                Volatile.Write(ref _shutdown, true);
            }
            removed = false;
            if (Volatile.Read(ref RunningOn) is not null)
            {
                return false;
            }
            removed = timerBase.DetachIfPending(this);
            return true;
        }
        finally
        {
            timerBase.BaseLock.Exit();
        }
    }

    /// <summary>lock_timer_base(): locks the base the timer belongs to, waiting out a migration.</summary>
    private TimerBase LockBase() => BaseLocking.LockHome(ref _base);

    private TimerBase LockBaseAndRead()
    {
        var timerBase = LockBase();
        timerBase.BaseLock.Exit();
        return timerBase;
    }

    private void CheckMayWait(string caller) =>
        BaseLocking.CheckMayWaitForCallback(Volatile.Read(ref RunningOn), caller, $"timer '{Name}'", "use DelTimer() there");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowPending(string caller) =>
        throw new InvalidOperationException($"{caller} on timer '{Name}', which is already pending: the kernel WARNs and ignores it; use ModTimer() to change a pending timer's expiry.");
}
