# The one CPU size shared by all five train_shakespeare_<model>.py configs, so they compare
# fairly: same depth, width, context, batch and schedule; only the architecture differs.
# Sized so reflow trains on 2 CPU cores in about 10 minutes.

dataset = "shakespeare"
n_layer = 4
n_head = 4
n_embd = 256
block_size = 256
bias = False
dropout = 0.0
n_signals = 256  # S = n_embd, as in the published reflows

# Small batches of 4 x 256 tokens: on this corpus, more updates per token beat bigger batches
# (val loss after 307k tokens: batch 4 at lr 1e-3 5.09, at 2e-3 5.25; batch 8 at 2e-3 5.75).
batch_size = 4
gradient_accumulation_steps = 1
learning_rate = 1e-3
max_iters = 700
lr_decay_iters = 700
warmup_iters = 20
min_lr = 1e-4
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 175
eval_iters = 20
log_interval = 10
always_save_checkpoint = False
device = "cpu"
dtype = "float32"
compile = False
wandb_log = False
wandb_project = "reflow-shakespeare"

# --- experiments (experiment.py) ---------------------------------------------------------------
# Probes that make sense for Shakespeare; every word is one GPT-2 token (most with a leading space).
probe_words = [" king", " queen", " lord", " lady", " thou", " love"]
word_groups = {
    "names": [" Romeo", " Juliet", " Richard", " Henry", " Edward", " Warwick", " Angelo", " Antonio"],
    "titles": [" king", " queen", " lord", " lady", " prince", " knight", " sir", " master"],
    "family": [" father", " mother", " son", " daughter", " brother", " sister", " uncle", " wife"],
    "emotions": [" love", " hate", " joy", " grief", " sorrow", " fear", " hope", " rage"],
    "pronouns": [" thou", " thee", " thy", " you", " he", " she", " we", " they"],
}
# Lists long enough for the paired tests against a --reference to reach p < 0.05 after Holm: a two-sided
# sign-flip test over n paired items has smallest p = 2 / 2^n, 0.03 at n = 6 and 0.008 at n = 8.
# They were fixed before any study checkpoint was evaluated.
analogies = [  # [a, b, c, d]: a - b + c should be d
    [" king", " man", " woman", " queen"],
    [" lord", " man", " woman", " lady"],
    [" father", " man", " woman", " mother"],
    [" son", " brother", " sister", " daughter"],
    [" he", " his", " her", " she"],
    [" prince", " king", " queen", " princess"],
    [" brother", " man", " woman", " sister"],
    [" uncle", " man", " woman", " aunt"],
    [" husband", " man", " woman", " wife"],
    [" boy", " man", " woman", " girl"],
    [" nephew", " man", " woman", " niece"],
    [" god", " man", " woman", " goddess"],
    [" master", " man", " woman", " mistress"],
    [" him", " he", " she", " her"],
    [" men", " man", " woman", " women"],
    [" kings", " king", " queen", " queens"],
    [" lords", " lord", " lady", " ladies"],
    [" sons", " son", " daughter", " daughters"],
    [" brothers", " brother", " sister", " sisters"],
    [" fathers", " father", " mother", " mothers"],
]
typo_sentences = [  # [correct, misspelled, unrelated], all ending alike so only the context differs
    ["Now is the winter of our discontent", "Now is teh wintre of our discontent", "Bring me bread and cheese for our discontent"],
    ["I pray you, good my lord", "I prya you, godo my lord", "The horse ran down to my lord"],
    ["What light through yonder window breaks", "What ligth throuhg yonder window breaks", "The old dog by the window breaks"],
    ["O Romeo, wherefore art thou Romeo", "O Romoe, wherfore art thou Romeo", "The cart went slowly, art thou Romeo"],
    ["All the world's a stage", "All teh wrold's a stage", "Put the bread upon a stage"],
    ["Friends, Romans, countrymen, lend me your ears", "Freinds, Romnas, countrymen, lend me your ears", "Apples, pears and wheat, lend me your ears"],
    ["The quality of mercy is not strained", "The qualtiy of mecry is not strained", "A bowl of cold soup is not strained"],
    ["Uneasy lies the head that wears a crown", "Uneasy leis teh head that wears a crown", "The small dog ate the bone that wears a crown"],
    ["Cowards die many times before their deaths", "Cowrads die mnay times before their deaths", "Farmers plant seeds each spring before their deaths"],
    ["Parting is such sweet sorrow", "Partign is scuh sweet sorrow", "Cold rain is such sweet sorrow"],
]
target_prompts = [  # [prompt, target]: frequent completions in the corpus
    ["To be, or not to", " be"],
    ["I pray you, good my", " lord"],
    ["ROMEO:\nO", ","],
    ["God save the", " king"],
    ["Long live the", " king"],
    ["My gracious", " lord"],
    ["Come hither, my", " lord"],
    ["Give me thy", " hand"],
    ["I know not what to", " say"],
    ["What is your", " name"],
]
# Steering: the even-indexed words define the direction, the odd-indexed ones (8 pairs) measure it.
positive_words = [" love", " joy", " sweet", " fair", " gentle", " happy", " noble", " good",
                  " kind", " merry", " dear", " glad", " bright", " blessed", " true", " honest"]
negative_words = [" hate", " grief", " sorrow", " foul", " cruel", " vile", " death", " wretched",
                  " bitter", " false", " sad", " fear", " wicked", " curse", " base", " shame"]
steer_prompts = ["ROMEO:\nMy heart is", "Thou art", "KING RICHARD III:\nI am",
                 "JULIET:\nMy lord, I am", "I do think", "She is"]
concept_words = [" crown", " love", " blood", " gold", " sword", " night", " war", " horse"]
concept_prompt = "I will speak of"
