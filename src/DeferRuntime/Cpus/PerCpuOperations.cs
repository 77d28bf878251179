using System.Runtime.CompilerServices;

namespace DeferRuntime.Cpus;

/// <summary>
/// The this_cpu_* operations (include/linux/percpu-defs.h) on per-CPU int, long, uint and ulong
/// variables: this_cpu_read, _write, _add, _sub, _inc, _dec, _add_return, _xchg, _cmpxchg, plus
/// <c>Sum</c> over all CPUs for counters.
/// </summary>
/// <remarks>
/// <para>
/// In the kernel these are safe against preemption and against interrupts of the local CPU without the
/// caller disabling either: one instruction (a segment-prefixed add on x86) that nothing on the CPU can
/// split. Here a CPU's tasks, its hard IRQs (cpu/N) and its softirqs are different OS threads that may run
/// at the same instant, so each operation is one atomic instruction on the local slot instead: Interlocked
/// for the read-modify-writes, Volatile for plain reads and writes. Any thread may call them, in any
/// context, without protection; the cost is a locked instruction on a line that, with one writer per
/// CPU, stays in that core's cache. None allocates.
/// </para>
/// <para>
/// "The local slot" is the calling thread's CPU when it is bound to a CPU of the variable's runtime. From a
/// thread of no CPU (an application thread) it is the CPU pinned to the OS core the thread is running on at
/// that instant, as the kernel's this_cpu ops in preemptible code act on whatever CPU the task runs on
/// (<see cref="Runtime"/>'s ProcessorLocal mapping, whatever the runtime's <see cref="ForeignPlacement"/>).
/// The thread may be on another core a moment later, which is harmless: every operation is atomic, so a
/// counter's <c>Sum</c> stays exact; only which slot counted the event varies. Refusing such threads
/// would push services to bind a thread just to count, and the kernel does not refuse either.
/// </para>
/// <para>
/// For the __this_cpu_* and raw_cpu_* forms (no atomicity, the caller disables what it must), use
/// <see cref="PerCpu{T}.ThisCpu"/> or <see cref="PerCpu{T}.GetCpuVar"/> and plain arithmetic.
/// </para>
/// </remarks>
public static class PerCpuOperations
{
    // ---- int ----

    /// <summary>this_cpu_read(pcp): the local slot (a volatile read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ThisCpuRead(this PerCpu<int> pcp) => Volatile.Read(ref pcp.Local());

    /// <summary>this_cpu_write(pcp, val): sets the local slot (a volatile write).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuWrite(this PerCpu<int> pcp, int value) => Volatile.Write(ref pcp.Local(), value);

    /// <summary>this_cpu_add(pcp, val): adds <paramref name="delta"/> to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuAdd(this PerCpu<int> pcp, int delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_sub(pcp, val): subtracts <paramref name="delta"/> from the local slot, atomically (wrapping).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuSub(this PerCpu<int> pcp, int delta) => Interlocked.Add(ref pcp.Local(), unchecked(-delta));

    /// <summary>this_cpu_inc(pcp): adds one to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuInc(this PerCpu<int> pcp) => Interlocked.Increment(ref pcp.Local());

    /// <summary>this_cpu_dec(pcp): subtracts one from the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuDec(this PerCpu<int> pcp) => Interlocked.Decrement(ref pcp.Local());

    /// <summary>this_cpu_add_return(pcp, val): adds <paramref name="delta"/> to the local slot atomically and returns the new value (this_cpu_inc_return: delta 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ThisCpuAddReturn(this PerCpu<int> pcp, int delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_xchg(pcp, nval): stores <paramref name="value"/> in the local slot and returns what was there, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ThisCpuXchg(this PerCpu<int> pcp, int value) => Interlocked.Exchange(ref pcp.Local(), value);

    /// <summary>
    /// this_cpu_cmpxchg(pcp, oval, nval): if the local slot holds <paramref name="oldValue"/>, stores
    /// <paramref name="newValue"/>; returns the value it held either way (success: it equals
    /// <paramref name="oldValue"/>). The kernel's argument order: expected first, unlike
    /// <see cref="Interlocked.CompareExchange(ref int, int, int)"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ThisCpuCmpxchg(this PerCpu<int> pcp, int oldValue, int newValue) => Interlocked.CompareExchange(ref pcp.Local(), newValue, oldValue);

    /// <summary>
    /// percpu_counter_sum()-style: the sum of every CPU's slot, in a long so it does not overflow. Each slot is read once
    /// (volatile); updates made during the call may or may not be counted, so it is exact once the updaters
    /// have finished, and approximate while they run, as the kernel's is.
    /// </summary>
    public static long Sum(this PerCpu<int> pcp)
    {
        ArgumentNullException.ThrowIfNull(pcp);
        long sum = 0;
        for (int cpu = 0; cpu < pcp.CpuCount; cpu++)
        {
            sum += Volatile.Read(ref pcp.For(cpu));
        }
        return sum;
    }

    // ---- long ----

    /// <summary>this_cpu_read(pcp): the local slot (a volatile read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ThisCpuRead(this PerCpu<long> pcp) => Volatile.Read(ref pcp.Local());

    /// <summary>this_cpu_write(pcp, val): sets the local slot (a volatile write).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuWrite(this PerCpu<long> pcp, long value) => Volatile.Write(ref pcp.Local(), value);

    /// <summary>this_cpu_add(pcp, val): adds <paramref name="delta"/> to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuAdd(this PerCpu<long> pcp, long delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_sub(pcp, val): subtracts <paramref name="delta"/> from the local slot, atomically (wrapping).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuSub(this PerCpu<long> pcp, long delta) => Interlocked.Add(ref pcp.Local(), unchecked(-delta));

    /// <summary>this_cpu_inc(pcp): adds one to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuInc(this PerCpu<long> pcp) => Interlocked.Increment(ref pcp.Local());

    /// <summary>this_cpu_dec(pcp): subtracts one from the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuDec(this PerCpu<long> pcp) => Interlocked.Decrement(ref pcp.Local());

    /// <summary>this_cpu_add_return(pcp, val): adds <paramref name="delta"/> to the local slot atomically and returns the new value (this_cpu_inc_return: delta 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ThisCpuAddReturn(this PerCpu<long> pcp, long delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_xchg(pcp, nval): stores <paramref name="value"/> in the local slot and returns what was there, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ThisCpuXchg(this PerCpu<long> pcp, long value) => Interlocked.Exchange(ref pcp.Local(), value);

    /// <summary>
    /// this_cpu_cmpxchg(pcp, oval, nval): if the local slot holds <paramref name="oldValue"/>, stores
    /// <paramref name="newValue"/>; returns the value it held either way (success: it equals
    /// <paramref name="oldValue"/>). The kernel's argument order: expected first, unlike
    /// <see cref="Interlocked.CompareExchange(ref long, long, long)"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ThisCpuCmpxchg(this PerCpu<long> pcp, long oldValue, long newValue) => Interlocked.CompareExchange(ref pcp.Local(), newValue, oldValue);

    /// <summary>
    /// percpu_counter_sum()-style: the sum of every CPU's slot. Each slot is read once
    /// (volatile); updates made during the call may or may not be counted, so it is exact once the updaters
    /// have finished, and approximate while they run, as the kernel's is.
    /// </summary>
    public static long Sum(this PerCpu<long> pcp)
    {
        ArgumentNullException.ThrowIfNull(pcp);
        long sum = 0;
        for (int cpu = 0; cpu < pcp.CpuCount; cpu++)
        {
            sum += Volatile.Read(ref pcp.For(cpu));
        }
        return sum;
    }

    // ---- uint ----

    /// <summary>this_cpu_read(pcp): the local slot (a volatile read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ThisCpuRead(this PerCpu<uint> pcp) => Volatile.Read(ref pcp.Local());

    /// <summary>this_cpu_write(pcp, val): sets the local slot (a volatile write).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuWrite(this PerCpu<uint> pcp, uint value) => Volatile.Write(ref pcp.Local(), value);

    /// <summary>this_cpu_add(pcp, val): adds <paramref name="delta"/> to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuAdd(this PerCpu<uint> pcp, uint delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_sub(pcp, val): subtracts <paramref name="delta"/> from the local slot, atomically (wrapping).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuSub(this PerCpu<uint> pcp, uint delta) => Interlocked.Add(ref pcp.Local(), unchecked(0u - delta));

    /// <summary>this_cpu_inc(pcp): adds one to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuInc(this PerCpu<uint> pcp) => Interlocked.Increment(ref pcp.Local());

    /// <summary>this_cpu_dec(pcp): subtracts one from the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuDec(this PerCpu<uint> pcp) => Interlocked.Decrement(ref pcp.Local());

    /// <summary>this_cpu_add_return(pcp, val): adds <paramref name="delta"/> to the local slot atomically and returns the new value (this_cpu_inc_return: delta 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ThisCpuAddReturn(this PerCpu<uint> pcp, uint delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_xchg(pcp, nval): stores <paramref name="value"/> in the local slot and returns what was there, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ThisCpuXchg(this PerCpu<uint> pcp, uint value) => Interlocked.Exchange(ref pcp.Local(), value);

    /// <summary>
    /// this_cpu_cmpxchg(pcp, oval, nval): if the local slot holds <paramref name="oldValue"/>, stores
    /// <paramref name="newValue"/>; returns the value it held either way (success: it equals
    /// <paramref name="oldValue"/>). The kernel's argument order: expected first, unlike
    /// <see cref="Interlocked.CompareExchange(ref uint, uint, uint)"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ThisCpuCmpxchg(this PerCpu<uint> pcp, uint oldValue, uint newValue) => Interlocked.CompareExchange(ref pcp.Local(), newValue, oldValue);

    /// <summary>
    /// percpu_counter_sum()-style: the sum of every CPU's slot, in a ulong. Each slot is read once
    /// (volatile); updates made during the call may or may not be counted, so it is exact once the updaters
    /// have finished, and approximate while they run, as the kernel's is.
    /// </summary>
    public static ulong Sum(this PerCpu<uint> pcp)
    {
        ArgumentNullException.ThrowIfNull(pcp);
        ulong sum = 0;
        for (int cpu = 0; cpu < pcp.CpuCount; cpu++)
        {
            sum += Volatile.Read(ref pcp.For(cpu));
        }
        return sum;
    }

    // ---- ulong ----

    /// <summary>this_cpu_read(pcp): the local slot (a volatile read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ThisCpuRead(this PerCpu<ulong> pcp) => Volatile.Read(ref pcp.Local());

    /// <summary>this_cpu_write(pcp, val): sets the local slot (a volatile write).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuWrite(this PerCpu<ulong> pcp, ulong value) => Volatile.Write(ref pcp.Local(), value);

    /// <summary>this_cpu_add(pcp, val): adds <paramref name="delta"/> to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuAdd(this PerCpu<ulong> pcp, ulong delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_sub(pcp, val): subtracts <paramref name="delta"/> from the local slot, atomically (wrapping).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuSub(this PerCpu<ulong> pcp, ulong delta) => Interlocked.Add(ref pcp.Local(), unchecked(0UL - delta));

    /// <summary>this_cpu_inc(pcp): adds one to the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuInc(this PerCpu<ulong> pcp) => Interlocked.Increment(ref pcp.Local());

    /// <summary>this_cpu_dec(pcp): subtracts one from the local slot, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThisCpuDec(this PerCpu<ulong> pcp) => Interlocked.Decrement(ref pcp.Local());

    /// <summary>this_cpu_add_return(pcp, val): adds <paramref name="delta"/> to the local slot atomically and returns the new value (this_cpu_inc_return: delta 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ThisCpuAddReturn(this PerCpu<ulong> pcp, ulong delta) => Interlocked.Add(ref pcp.Local(), delta);

    /// <summary>this_cpu_xchg(pcp, nval): stores <paramref name="value"/> in the local slot and returns what was there, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ThisCpuXchg(this PerCpu<ulong> pcp, ulong value) => Interlocked.Exchange(ref pcp.Local(), value);

    /// <summary>
    /// this_cpu_cmpxchg(pcp, oval, nval): if the local slot holds <paramref name="oldValue"/>, stores
    /// <paramref name="newValue"/>; returns the value it held either way (success: it equals
    /// <paramref name="oldValue"/>). The kernel's argument order: expected first, unlike
    /// <see cref="Interlocked.CompareExchange(ref ulong, ulong, ulong)"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ThisCpuCmpxchg(this PerCpu<ulong> pcp, ulong oldValue, ulong newValue) => Interlocked.CompareExchange(ref pcp.Local(), newValue, oldValue);

    /// <summary>
    /// percpu_counter_sum()-style: the sum of every CPU's slot. Each slot is read once
    /// (volatile); updates made during the call may or may not be counted, so it is exact once the updaters
    /// have finished, and approximate while they run, as the kernel's is.
    /// </summary>
    public static ulong Sum(this PerCpu<ulong> pcp)
    {
        ArgumentNullException.ThrowIfNull(pcp);
        ulong sum = 0;
        for (int cpu = 0; cpu < pcp.CpuCount; cpu++)
        {
            sum += Volatile.Read(ref pcp.For(cpu));
        }
        return sum;
    }
}
