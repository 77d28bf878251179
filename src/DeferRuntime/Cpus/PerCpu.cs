using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Cpus;

/// <summary>
/// DEFINE_PER_CPU() / alloc_percpu(): one <typeparamref name="T"/> per virtual CPU of a runtime, each on
/// its own cache lines, zero-filled (default) as alloc_percpu() returns it.
/// </summary>
/// <remarks>
/// <para>Four ways in, as in include/linux/percpu-defs.h:</para>
/// <list type="bullet">
/// <item><see cref="For"/> (per_cpu(var, cpu)): any CPU's slot, from any thread. Who may touch it is the
/// caller's business (a lock, or the owning CPU only), as in the kernel.</item>
/// <item><see cref="GetCpuVar"/> (get_cpu_var/put_cpu_var): preempt_disable(), then the calling task's own
/// slot, until the scope is disposed. No other task of the CPU runs meanwhile, so plain reads and writes
/// are safe against them; the CPU's hard IRQs and softirqs still run (on other OS threads), so data they
/// share with the task needs <see cref="CpuContext.LocalIrqSave"/> or <see cref="CpuContext.LocalBhDisable"/>,
/// or the atomic operations below.</item>
/// <item><see cref="ThisCpu"/> (this_cpu_ptr): the calling thread's slot, only where the kernel's
/// DEBUG_PREEMPT would allow it: preemption, bottom halves or interrupts disabled, or interrupt context.</item>
/// <item>The this_cpu_* operations of <see cref="PerCpuOperations"/> for int, long, uint and ulong: each is
/// one atomic instruction on the local slot and needs no protection, as this_cpu_inc() needs none.</item>
/// </list>
/// <para>
/// Layout (one array, so the GC sees one object and no slot is boxed): slot i sits at element
/// <c>pad + i * (pad + 1)</c>, where <c>pad</c> is the number of elements that covers
/// <see cref="SeparationBytes"/>, and as many follow the last slot. So at least 128 bytes lie between
/// the array header and slot 0, between the end of one slot and the start of the next, and after the
/// last, whatever the array's alignment: no slot shares a cache line, or the adjacent-line pair that
/// prefetchers fetch together, with another slot or another object. A large <typeparamref name="T"/>
/// costs one padding element per slot.
/// </para>
/// </remarks>
/// <typeparam name="T">The per-CPU type; any type (a reference type gets one reference per CPU, initially null).</typeparam>
public sealed class PerCpu<T>
{
    /// <summary>
    /// Bytes kept clear before slot 0 and between slots: two 64-byte lines, since Intel's spatial
    /// prefetcher pulls lines in 128-byte-aligned pairs, and some arm64 cores have 128-byte lines (the
    /// figure dotnet/runtime's PaddingHelpers.CACHE_LINE_SIZE uses on arm64).
    /// </summary>
    public const int SeparationBytes = 128;

    private readonly Runtime _runtime; // I
    private readonly T[] _slots;       // I: the array; the slots are written by their users
    private readonly int _pad;         // I: padding elements before slot 0 and between slots
    private readonly int _stride;      // I: _pad + 1

    /// <summary>
    /// alloc_percpu(type): a slot for every CPU of <paramref name="runtime"/> (nr_cpu_ids of them), each
    /// default(<typeparamref name="T"/>). Nothing to free: the slots go with the object.
    /// </summary>
    public PerCpu(Runtime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _runtime = runtime;
        CpuCount = runtime.Cpus.Count;
        int size = Unsafe.SizeOf<T>();
        _pad = (SeparationBytes + size - 1) / size;
        _stride = _pad + 1;
        _slots = new T[_pad + (CpuCount * _stride)];
    }

    /// <summary>The runtime whose CPUs own the slots.</summary>
    public Runtime Runtime => _runtime;

    /// <summary>nr_cpu_ids: the number of slots, one per virtual CPU (valid CPUs are 0 to CpuCount - 1).</summary>
    public int CpuCount { get; }

    /// <summary>
    /// per_cpu(var, cpu) / per_cpu_ptr(ptr, cpu): CPU <paramref name="cpu"/>'s slot, from any thread.
    /// Throws <see cref="ArgumentOutOfRangeException"/> for a CPU the runtime does not have.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref T For(int cpu)
    {
        if ((uint)cpu >= (uint)CpuCount)
        {
            ThrowNoSuchCpu(cpu);
        }
        return ref _slots[_pad + (cpu * _stride)];
    }

    /// <summary>
    /// this_cpu_ptr(ptr) / *raw_cpu_ptr(): the calling thread's CPU's slot, allowed only where the caller
    /// cannot be joined on its CPU by another task: preemption, bottom halves or local interrupts disabled,
    /// or in a hard-IRQ or softirq handler (a tasklet, a BH work item). Elsewhere it throws
    /// "this_cpu_ptr() in preemptible context", the kernel's DEBUG_PREEMPT report
    /// ("BUG: using smp_processor_id() in preemptible code"), and from a thread of no CPU of this runtime
    /// it throws too: there is no "this CPU" to name.
    /// </summary>
    /// <remarks>
    /// Stricter than DEBUG_PREEMPT, which also accepts a task pinned to one CPU: every bound thread here is
    /// pinned (it cannot change CPU), so the question that matters is not migration but whether another
    /// task of the CPU may use the slot at the same time, which only a disabled section rules out.
    /// </remarks>
    public ref T ThisCpu
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            var ctx = ThreadContext.Current;
            if (ctx is null || !ReferenceEquals(ctx.Cpu.Runtime, _runtime) || (ctx.PreemptCount == 0 && !ctx.IrqsOff))
            {
                ThrowThisCpuUnusable(ctx);
            }
            return ref _slots[_pad + (ctx.Cpu.Id * _stride)];
        }
    }

    /// <summary>
    /// get_cpu_var(var): preempt_disable(), then the calling task's slot; disposing the scope is
    /// put_cpu_var(var) (preempt_enable()). Use with <c>using</c>:
    /// <c>using (var v = counters.GetCpuVar()) { v.Value++; }</c>. Needs a thread bound to a CPU of this
    /// runtime (a handler, tasklet, softirq, worker or bound task): from any other thread it throws
    /// <see cref="InvalidOperationException"/>, as <see cref="CpuContext.PreemptDisable"/> does.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public CpuVarScope<T> GetCpuVar()
    {
        var ctx = ThreadContext.Current;
        if (ctx is null || !ReferenceEquals(ctx.Cpu.Runtime, _runtime))
        {
            ThrowNotOnOwnCpu("get_cpu_var()", ctx);
        }
        CpuContext.PreemptDisable();
        int cpu = ctx.Cpu.Id;
        return new CpuVarScope<T>(ref _slots[_pad + (cpu * _stride)], cpu);
    }

    /// <summary>
    /// The slot the this_cpu_* operations act on: the calling thread's CPU if it is bound to a CPU of this
    /// runtime; otherwise the CPU pinned to the OS core the thread is running on at this instant (the
    /// runtime's <see cref="ForeignPlacement.ProcessorLocal"/> mapping, whatever the runtime's placement
    /// option), which is what the kernel's preemptible this_cpu_inc() does: the CPU it happens to run on,
    /// possibly another one a moment later. The operations are single atomic instructions, so the choice
    /// affects only which slot counts the event and its cache locality, never the total.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref T Local()
    {
        var ctx = ThreadContext.Current;
        int cpu = ctx is not null && ReferenceEquals(ctx.Cpu.Runtime, _runtime) ? ctx.Cpu.Id : _runtime.ProcessorLocalCpuId();
        return ref _slots[_pad + (cpu * _stride)];
    }

    /// <summary>The slot array, for tests of the layout.</summary>
    internal T[] SlotArray => _slots;

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowNoSuchCpu(int cpu) =>
        throw new ArgumentOutOfRangeException(nameof(cpu), cpu,
            $"per_cpu(var, {cpu}): CPU {cpu} does not exist; a per-CPU variable has a slot for each CPU of its runtime, 0 to {CpuCount - 1}.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowThisCpuUnusable(ThreadContext? ctx)
    {
        if (ctx is null || !ReferenceEquals(ctx.Cpu.Runtime, _runtime))
        {
            ThrowNotOnOwnCpu("this_cpu_ptr()", ctx);
        }
        throw new InvalidOperationException(
            $"BUG: this_cpu_ptr() in preemptible context ({ctx.Describe()}, CPU {ctx.Cpu.Id}): another task of the CPU may use the same slot meanwhile. " +
            "Take get_cpu_var() or preempt_disable() first, or use the this_cpu_* operations, which are atomic.");
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotOnOwnCpu(string caller, ThreadContext? ctx)
    {
        string thread = Thread.CurrentThread.Name ?? Environment.CurrentManagedThreadId.ToString(CultureInfo.InvariantCulture);
        string where = ctx is null ? "which belongs to no CPU" : $"which belongs to no CPU of this runtime (it is bound to CPU {ctx.Cpu.Id} of another one)";
        throw new InvalidOperationException(
            $"{caller} from thread '{thread}', {where}: \"this CPU\" is the CPU of the calling thread. " +
            "Call it from a handler, tasklet, softirq, worker or bound task of the variable's runtime; per_cpu(var, cpu) and the this_cpu_* operations work from any thread.");
    }
}

/// <summary>
/// A get_cpu_var() section: preemption is disabled and <see cref="Value"/> is the calling task's slot.
/// Dispose is put_cpu_var() (preempt_enable()); dispose it on the thread that took it, which a ref struct
/// guarantees.
/// </summary>
/// <typeparam name="T">The per-CPU type.</typeparam>
public readonly ref struct CpuVarScope<T>
{
    private readonly ref T _value;
    private readonly bool _held;

    internal CpuVarScope(ref T value, int cpu)
    {
        _value = ref value;
        Cpu = cpu;
        _held = true;
    }

    /// <summary>The slot of the CPU the section runs on (the variable get_cpu_var() names).</summary>
    public ref T Value => ref _value;

    /// <summary>get_cpu(): the CPU the section runs on.</summary>
    public int Cpu { get; }

    /// <summary>put_cpu_var(): preempt_enable().</summary>
    public void Dispose()
    {
        if (_held)
        {
            CpuContext.PreemptEnable();
        }
    }
}
