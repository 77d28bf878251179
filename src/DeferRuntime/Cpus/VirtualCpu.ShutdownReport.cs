using System.Numerics;
using System.Runtime.CompilerServices;
using DeferRuntime.Softirqs;
using DeferRuntime.Tasklets;

namespace DeferRuntime.Cpus;

// Shutdown's report of what this CPU accepted and never started (RuntimeShutdownReport.NotStarted).
public sealed partial class VirtualCpu
{
    /// <summary>
    /// Adds what is still queued on this CPU to <paramref name="into"/> as not started: raised softirq
    /// vectors, scheduled tasklets, asserted device interrupts and queued IPI calls, including those a
    /// thread left behind had taken into a running batch (<see cref="SoftirqBatch"/> and the rest).
    /// Called by shutdown after its joins: a thread left behind is inside a callback and, callbacks being
    /// closed, starts none of these. Read racily, from fields only a left-behind thread could still write.
    /// </summary>
    internal void CollectNotStarted(List<RuntimeShutdownItem> into)
    {
        // Softirq vectors: raised and not run. A vector whose action a left-behind thread is running is
        // reported by that thread (still running), unless it was raised again meanwhile.
        int softirqs = Volatile.Read(ref Line.SoftirqPending) | LocalSoftirqPending | SoftirqBatch;
        for (int bits = softirqs; bits != 0; bits &= bits - 1)
        {
            int nr = BitOperations.TrailingZeroCount(bits);
            into.Add(new RuntimeShutdownItem(SoftirqTable.Names[nr], ShutdownItemKind.Softirq, ShutdownItemState.NotStarted, Id, null, null, null));
        }

        var seen = new HashSet<Tasklet>(ReferenceEqualityComparer.Instance);
        foreach (var head in new[] { TaskletBatch, LocalHead, LocalHiHead, Volatile.Read(ref Line.TaskletHead), Volatile.Read(ref Line.HiTaskletHead) })
        {
            // Bounded: a list read racily could be caught mid-update; never loop forever on it.
            int n = 0;
            for (var t = head; t is not null && n < 1_000_000; t = ((IIntrusiveNode<Tasklet>)t).Next, n++)
            {
                if (seen.Add(t))
                {
                    into.Add(new RuntimeShutdownItem(t.Name, ShutdownItemKind.Tasklet, ShutdownItemState.NotStarted, Id, null, null, t));
                }
            }
        }

        for (int word = 0; word < VectorCount / 64; word++)
        {
            long bits = Volatile.Read(ref Unsafe.Add(ref Line.IrqPending0, word)) | (IrqBatchWord == word ? IrqBatch : 0);
            for (; bits != 0; bits &= bits - 1)
            {
                int vector = (word << 6) | BitOperations.TrailingZeroCount(bits);
                if (vector is CallFunctionVector or LocalTimerVector)
                {
                    continue; // the calls are listed one by one below; the tick is no accepted work
                }
                into.Add(new RuntimeShutdownItem(Runtime.Irqs.DescribeVector(vector), ShutdownItemKind.HardIrq, ShutdownItemState.NotStarted, Id, null, null, null));
            }
        }

        foreach (var head in new[] { CallBatch, Volatile.Read(ref Line.CallHead) })
        {
            int n = 0;
            for (var csd = head; csd is not null && n < 1_000_000; csd = ((IIntrusiveNode<CallSingleData>)csd).Next, n++)
            {
                into.Add(new RuntimeShutdownItem("IPI call function", ShutdownItemKind.IpiCall, ShutdownItemState.NotStarted, Id, null, null, csd));
            }
        }
    }
}
