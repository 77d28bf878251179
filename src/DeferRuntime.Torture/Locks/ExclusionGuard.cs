using System.Runtime.InteropServices;

namespace DeferRuntime.Torture.Locks;

/// <summary>
/// locktorture's lock_is_write_held / lock_is_read_held, made exact: an owner slot claimed with an
/// atomic exchange by every writer that believes it holds the lock, a count of readers inside, and a
/// counter incremented without atomics across the whole hold. A violation is counted, never thrown: a
/// broken lock must produce a report, not a crash.
/// </summary>
/// <remarks>
/// Why these three. The owner slot catches any two writers inside at once without relying on timing:
/// if writer B claims while A is inside, B's exchange returns A (or, if a third writer replaced A
/// meanwhile, that third writer's exchange returned A); either way someone counts it. Writers and
/// readers look at each other after announcing themselves with full barriers (Interlocked), so with
/// sequentially consistent atomics at least one of an overlapping pair sees the other (Dekker). The plain
/// counter is read at the start of the hold and written at its end: if two holds overlap, one increment
/// is lost, and the total falls short of the acquisitions; under a correct lock its plain accesses are
/// ordered by the lock's own acquire and release, which is exactly what is being tested.
/// </remarks>
internal sealed class ExclusionGuard
{
    private Slots _slots;

    [StructLayout(LayoutKind.Explicit, Size = 192)]
    private struct Slots
    {
        [FieldOffset(0)]
        public int Writer;  // A: tid + 1 of the writer inside, 0 = none

        [FieldOffset(64)]
        public int Readers; // A: readers inside

        [FieldOffset(128)]
        public long Counter; // plain, written only inside the write side (that is the point)
    }

    /// <summary>The plain counter: equal to the write acquisitions unless an increment was lost to an overlap.</summary>
    public long Counter => Volatile.Read(ref _slots.Counter);

    /// <summary>A writer that believes it holds the lock announces itself; returns the violations seen and the counter value it read.</summary>
    public int EnterWrite(int tid, out long counter)
    {
        int violations = 0;
        if (Interlocked.Exchange(ref _slots.Writer, tid + 1) != 0)
        {
            violations++; // another writer is inside
        }
        if (Volatile.Read(ref _slots.Readers) != 0)
        {
            violations++; // a reader is inside
        }
        counter = Volatile.Read(ref _slots.Counter);
        return violations;
    }

    /// <summary>A writer about to release; returns the violations seen.</summary>
    public int ExitWrite(int tid, long counter)
    {
        Volatile.Write(ref _slots.Counter, counter + 1);
        // The slot must still be ours: anyone who replaced it was inside with us.
        return Interlocked.CompareExchange(ref _slots.Writer, 0, tid + 1) == tid + 1 ? 0 : 1;
    }

    /// <summary>A reader that believes it holds the read side announces itself; returns the violations seen.</summary>
    public int EnterRead()
    {
        Interlocked.Increment(ref _slots.Readers);
        return Volatile.Read(ref _slots.Writer) != 0 ? 1 : 0;
    }

    /// <summary>A reader about to release; returns the violations seen.</summary>
    public int ExitRead()
    {
        int violations = Volatile.Read(ref _slots.Writer) != 0 ? 1 : 0;
        Interlocked.Decrement(ref _slots.Readers);
        return violations;
    }
}
