package nl.uva.deepspike.mlp;

/*
 * distspike's training driver for the authors' engine (petered/DeepSpike, SpikingMLP), for
 * benchmarks/anchors/anchor_rows.py: trains the engine under distspike's protocol (its initial weights, its data
 * order and split, one experiment's settings) so that a gap between distspike and the paper can be isolated.
 *
 * Set up as the paper's MNIST experiments set the engine up (docs/semantics.md): held errors, rectified herding
 * forward and at test time ("rect-herding"), float64 ("DOUBLE"), the queue implementation, no regularisation,
 * online training one sample at a time (train_one), the engine's step eta / T^2.
 *
 * Data order: distspike trains in file order, the same order every epoch (data.shuffle_seed null), so this does too.
 *
 * Arguments (key=value):
 *   data=DIR            MNIST IDX .gz files (train-images-idx3-ubyte.gz, ...)
 *   weights=FILE        initial weights (DeepSpikeDriver's format: int32 layers, then per layer int32 rows, int32
 *                       cols and rows*cols float32, big-endian)
 *   rule=sgd|fsgd       SGD (outer product at the end of a sample) or FSGD (fractional updates)
 *   smooth=0|1          smooth gradients (the engine's smooth_grads: updates from the running pre-activation sums)
 *   backward=noreset|random   the backward quantizers: "noreset-herding" (distspike backward_reset: none) or
 *                       "randreset-herding" (backward_reset: random; phi ~ U(-0.5, 0.5) at each sample)
 *   depth_first=0|1     routing (distspike routing: dfs); hold_error=1|0
 *   steps=10 eta=0.01 seed=1234 (the engine's Random: quantizer resets; only random resets draw from it)
 *   split=official|validation   official: 60k train / 10k test; validation: the first 50k training images train,
 *                       the last 10k test (mnist.pkl.gz's split)
 *   epochs=4            epochs over the whole training part
 *   n_train=0           0: the whole training part; N: only its first N samples per epoch (checks)
 *   n_test=0            0: the whole test part; N: its first N samples
 *   count=0|1           1: count spikes in epoch 1 (input, per layer, errors passed per layer), per sample
 *   ckpt=FILE           after every epoch (after its marked line), write the state that outlives a sample to FILE
 *                       (atomically): the epoch, every weight in float64, the backward quantizers' phi (never reset
 *                       under noreset-herding), the engine's Random (random resets draw from it)
 *   resume=0|1          1: if ckpt=FILE exists, load it and go on with the epoch after it (bit-exact)
 * After every epoch prints one line: DISTSPIKE-ANCHOR {json} (epoch, test_error, train_wall_s, train_cpu_s,
 * test_wall_s, ...).
 */

import nl.uva.arrays.IVector;
import nl.uva.arrays.VectorFactory;

import java.io.*;
import java.lang.reflect.Field;
import java.nio.file.*;
import java.util.*;
import java.util.zip.GZIPInputStream;

public class DeepSpikeTrainer {

    static final String MARK = "DISTSPIKE-ANCHOR ";

    /** All rows of an IDX file of unsigned bytes, kept as bytes (scaled when a sample is fed). */
    static byte[][] idxBytes(File file) throws IOException {
        try (DataInputStream in = new DataInputStream(new BufferedInputStream(
                new GZIPInputStream(new FileInputStream(file)), 1 << 16))) {
            int magic = in.readInt();
            int dims = magic & 0xff;
            if ((magic >>> 8) != 0x08 || dims < 1)
                throw new IOException(file + ": not an IDX file of unsigned bytes (magic " + magic + ")");
            int rows = in.readInt(), width = 1;
            for (int d = 1; d < dims; d++) width *= in.readInt();
            byte[][] out = new byte[rows][width];
            for (byte[] row : out) in.readFully(row);
            return out;
        }
    }

    /** A sample's pixels / 255 (distspike's ScaledRows scale). */
    static IVector image(byte[] row) {
        double[] v = new double[row.length];
        for (int j = 0; j < row.length; j++) v[j] = (row[j] & 0xff) / 255.0;
        return VectorFactory.create(v);
    }

    static IVector oneHot(int label, int classes) {
        double[] t = new double[classes];
        t[label] = 1.0;
        return VectorFactory.create(t);
    }

    static int argmax(IVector v) {
        float[] f = v.asFloat();
        int best = 0;
        for (int j = 1; j < f.length; j++) if (f[j] > f[best]) best = j;
        return best;
    }

    static String need(Map<String, String> arg, String key, String... allowed) {
        String v = arg.get(key);
        if (!Arrays.asList(allowed).contains(v))
            throw new IllegalArgumentException(key + "=" + v + ": expected one of " + Arrays.toString(allowed));
        return v;
    }

    static final int CKPT_MAGIC = 0x44534b31;  // "DSK1"

    /** A field of obj (declared by its class or a superclass), made accessible: the engine keeps its state private. */
    static Object field(Object obj, String name) throws ReflectiveOperationException {
        for (Class<?> c = obj.getClass(); c != null; c = c.getSuperclass()) {
            try {
                Field f = c.getDeclaredField(name);
                f.setAccessible(true);
                return f.get(obj);
            } catch (NoSuchFieldException ignored) {
            }
        }
        throw new NoSuchFieldException(obj.getClass() + "." + name);
    }

    /** The weight matrices (shared by the forward and backward weight modules, updated in place). */
    static double[][][] weights(SpikingMLP net) throws ReflectiveOperationException {
        double[][][] out = new double[net.layers.length][][];
        for (int l = 0; l < out.length; l++) out[l] = (double[][]) field(field(net.layers[l].forward_weights, "w"), "data");
        return out;
    }

    /** The phi of every backward quantizer (layers 2..L), the only herders whose state outlives a sample. */
    static List<double[]> backwardPhis(SpikingMLP net) throws ReflectiveOperationException {
        List<double[]> out = new ArrayList<>();
        for (QuantizingLayer lay : net.layers)
            if (lay.backward_herder != null) out.add((double[]) field(field(lay.backward_herder, "phi"), "data"));
        return out;
    }

    /** The engine's Random, held by its random-reset herders (null when none draws from it). */
    static Random engineRandom(SpikingMLP net) throws ReflectiveOperationException {
        for (QuantizingLayer lay : net.layers)
            if (lay.backward_herder instanceof nl.uva.deepspike.event_modules.RandomShiftedThresholdHerder)
                return (Random) field(lay.backward_herder, "rng");
        return null;
    }

    static void saveCheckpoint(File file, SpikingMLP net, int epoch) throws Exception {
        File tmp = new File(file.getPath() + ".tmp");
        try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(tmp)))) {
            out.writeInt(CKPT_MAGIC);
            out.writeInt(epoch);
            double[][][] ws = weights(net);
            out.writeInt(ws.length);
            for (double[][] w : ws) {
                out.writeInt(w.length);
                out.writeInt(w[0].length);
                for (double[] row : w) for (double v : row) out.writeDouble(v);
            }
            List<double[]> phis = backwardPhis(net);
            out.writeInt(phis.size());
            for (double[] phi : phis) {
                out.writeInt(phi.length);
                for (double v : phi) out.writeDouble(v);
            }
            Random rng = engineRandom(net);
            out.writeBoolean(rng != null);
            if (rng != null) {
                ByteArrayOutputStream bytes = new ByteArrayOutputStream();
                try (ObjectOutputStream o = new ObjectOutputStream(bytes)) { o.writeObject(rng); }
                out.writeInt(bytes.size());
                out.write(bytes.toByteArray());
            }
        }
        Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Load a checkpoint into net (same sizes, same settings); returns the epoch it was written after. */
    static int loadCheckpoint(File file, SpikingMLP net) throws Exception {
        try (DataInputStream in = new DataInputStream(new BufferedInputStream(new FileInputStream(file)))) {
            if (in.readInt() != CKPT_MAGIC) throw new IOException(file + ": not a DeepSpikeTrainer checkpoint");
            int epoch = in.readInt();
            double[][][] ws = weights(net);
            if (in.readInt() != ws.length) throw new IOException(file + ": another net (layer count)");
            for (double[][] w : ws) {
                if (in.readInt() != w.length || in.readInt() != w[0].length) throw new IOException(file + ": another net (sizes)");
                for (double[] row : w) for (int j = 0; j < row.length; j++) row[j] = in.readDouble();
            }
            List<double[]> phis = backwardPhis(net);
            if (in.readInt() != phis.size()) throw new IOException(file + ": another net (backward quantizers)");
            for (double[] phi : phis) {
                if (in.readInt() != phi.length) throw new IOException(file + ": another net (quantizer sizes)");
                for (int j = 0; j < phi.length; j++) phi[j] = in.readDouble();
            }
            Random rng = engineRandom(net);
            if (in.readBoolean() != (rng != null)) throw new IOException(file + ": another backward quantizer setting");
            if (rng != null) {
                byte[] bytes = new byte[in.readInt()];
                in.readFully(bytes);
                Random saved;
                try (ObjectInputStream o = new ObjectInputStream(new ByteArrayInputStream(bytes))) { saved = (Random) o.readObject(); }
                // the herders share one Random: give it the saved state by swapping the saved object in everywhere
                for (QuantizingLayer lay : net.layers)
                    if (lay.backward_herder instanceof nl.uva.deepspike.event_modules.RandomShiftedThresholdHerder) {
                        Field f = nl.uva.deepspike.event_modules.RandomShiftedThresholdHerder.class.getDeclaredField("rng");
                        f.setAccessible(true);
                        f.set(lay.backward_herder, saved);
                    }
            }
            return epoch;
        }
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> arg = new HashMap<>(Map.of("rule", "sgd", "smooth", "0", "backward", "noreset",
                "depth_first", "0", "hold_error", "1", "split", "official", "count", "0", "resume", "0"));
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (eq < 1) throw new IllegalArgumentException("expected key=value, got " + a);
            arg.put(a.substring(0, eq), a.substring(eq + 1));
        }
        File data = new File(arg.getOrDefault("data", "data/mnist"));
        String rule = need(arg, "rule", "sgd", "fsgd");
        boolean smooth = need(arg, "smooth", "0", "1").equals("1");
        String backward = need(arg, "backward", "noreset", "random").equals("random") ? "randreset-herding" : "noreset-herding";
        boolean depthFirst = need(arg, "depth_first", "0", "1").equals("1");
        boolean holdError = need(arg, "hold_error", "0", "1").equals("1");
        boolean validation = need(arg, "split", "official", "validation").equals("validation");
        boolean count = need(arg, "count", "0", "1").equals("1");
        int steps = Integer.parseInt(arg.getOrDefault("steps", "10"));
        float eta = Float.parseFloat(arg.getOrDefault("eta", "0.01"));
        int seed = Integer.parseInt(arg.getOrDefault("seed", "1234"));
        int epochs = Integer.parseInt(arg.getOrDefault("epochs", "4"));
        int nTrainArg = Integer.parseInt(arg.getOrDefault("n_train", "0"));
        int nTestArg = Integer.parseInt(arg.getOrDefault("n_test", "0"));
        File ckpt = arg.containsKey("ckpt") ? new File(arg.get("ckpt")) : null;
        boolean resume = need(arg, "resume", "0", "1").equals("1");

        float[][][] ws = DeepSpikeDriver.readWeights(new File(arg.get("weights")));
        int classes = ws[ws.length - 1][0].length;
        // (ws, n_steps, eta, depth_first, fractional_updates, queue_implementation, return_counts, smooth_grads,
        //  forward, backward, test discretisation, seed, regularization, hold_error, dtype)
        SpikingMLP net = new SpikingMLP(ws, steps, eta, depthFirst, rule.equals("fsgd"), true, false, smooth,
                "rect-herding", backward, "rect-herding", seed, 0f, holdError, "DOUBLE");

        byte[][] xtr = idxBytes(new File(data, "train-images-idx3-ubyte.gz"));
        byte[][] ytr = idxBytes(new File(data, "train-labels-idx1-ubyte.gz"));
        byte[][] xte, yte;
        int trainLo = 0, trainHi, testLo;
        if (validation) {
            trainHi = xtr.length - 10000;
            xte = xtr;
            yte = ytr;
            testLo = trainHi;
        } else {
            trainHi = xtr.length;
            xte = idxBytes(new File(data, "t10k-images-idx3-ubyte.gz"));
            yte = idxBytes(new File(data, "t10k-labels-idx1-ubyte.gz"));
            testLo = 0;
        }
        if (nTrainArg > 0) trainHi = Math.min(trainHi, trainLo + nTrainArg);
        int testHi = nTestArg > 0 ? Math.min(xte.length, testLo + nTestArg) : (validation ? xtr.length : xte.length);

        int done = resume && ckpt != null && ckpt.exists() ? loadCheckpoint(ckpt, net) : 0;
        for (int epoch = done + 1; epoch <= epochs; epoch++) {
            DeepSpikeDriver.Counters counters = count && epoch == 1 ? new DeepSpikeDriver.Counters(net) : null;
            long c0 = DeepSpikeDriver.cpuNanos(), w0 = System.nanoTime();
            for (int k = trainLo; k < trainHi; k++) net.train_one(image(xtr[k]), oneHot(ytr[k][0] & 0xff, classes));
            long c1 = DeepSpikeDriver.cpuNanos(), w1 = System.nanoTime();
            String spikes = counters != null ? ", " + counters.json(trainHi - trainLo) : "";
            int wrong = 0;
            for (int k = testLo; k < testHi; k++) if (argmax(net.predict_one(image(xte[k]))) != (yte[k][0] & 0xff)) wrong++;
            long c2 = DeepSpikeDriver.cpuNanos(), w2 = System.nanoTime();
            System.out.println(MARK + String.format(Locale.ROOT,
                    "{\"engine\": \"deepspike\", \"epoch\": %d, \"n_train\": %d, \"n_test\": %d, \"test_error\": %.6f, "
                            + "\"train_wall_s\": %.3f, \"train_cpu_s\": %.3f, \"test_wall_s\": %.3f, \"test_cpu_s\": %.3f%s}",
                    epoch, trainHi - trainLo, testHi - testLo, wrong / (double) (testHi - testLo),
                    (w1 - w0) * 1e-9, (c1 - c0) * 1e-9, (w2 - w1) * 1e-9, (c2 - c1) * 1e-9, spikes));
            System.out.flush();
            if (ckpt != null) saveCheckpoint(ckpt, net, epoch);
        }
    }
}
