namespace DeferRuntime.Cpus;

/// <summary>A node that carries its own link, so queueing it allocates nothing.</summary>
internal interface IIntrusiveNode<T>
    where T : class
{
    T? Next { get; set; }
}

/// <summary>
/// Multi-producer, single-consumer intrusive list: producers push with a CAS on the head; the consumer
/// (whoever holds the owning CPU's bh gate, or cpu/N in hard-IRQ context) takes the whole list at once.
/// </summary>
internal static class IntrusiveMpsc
{
    /// <summary>Pushes <paramref name="node"/>; lock-free, allocation-free.</summary>
    public static void Push<T>(ref T? head, T node)
        where T : class, IIntrusiveNode<T>
    {
        T? observed = Volatile.Read(ref head);
        while (true)
        {
            node.Next = observed;
            T? seen = Interlocked.CompareExchange(ref head, node, observed);
            if (ReferenceEquals(seen, observed))
            {
                return;
            }
            observed = seen;
        }
    }

    /// <summary>Takes every node pushed so far, oldest first (the kernel's lists are FIFO).</summary>
    public static T? TakeAllFifo<T>(ref T? head)
        where T : class, IIntrusiveNode<T>
    {
        T? lifo = Volatile.Read(ref head) is null ? null : Interlocked.Exchange(ref head, null);
        T? fifo = null;
        while (lifo is not null)
        {
            T? next = lifo.Next;
            lifo.Next = fifo;
            fifo = lifo;
            lifo = next;
        }
        return fifo;
    }
}
